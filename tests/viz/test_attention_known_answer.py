"""The map computation on a model whose right answer is known: patch features encode their position.

Patch p's feature is the p-th basis vector; a sentence's feature is the box of the object it names
(read from the sentence's own words: size and grid position) as coverage of the patch grid. The
cosine map of a sentence is then its box, and its SAP map the softmax of it: both in-box shares are
known in closed form, computed here from a pixel mask, independently of ``mass_in_box``. A swapped
axis, a flipped grid, a sentence paired with the wrong object or a box off by the crop would miss.
"""

import json
import math
import re
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from mulclip_pl.data.synthlong.generator import generate
from mulclip_pl.data.synthlong.scenes import COLS, ROWS, SceneObject
from mulclip_pl.tokenizer import LongTextTokenizer
from mulclip_pl.viz.attention import object_localization, object_shares, relevance_maps
from mulclip_pl.viz.localization import bootstrap_mean, localization

SIZE, PATCH, TAU = 64, 8, 0.07
GRID = (SIZE // PATCH, SIZE // PATCH)
POSITIONS = {("center" if (r, c) == (1, 1) else f"{ROWS[r]} {COLS[c]}"): (r, c) for r in range(3) for c in range(3)}
PLACE = re.compile("|".join(sorted(POSITIONS, key=len, reverse=True)))


def coverage(box) -> torch.Tensor:
    """(gh * gw,) share of each patch's pixels inside ``box``, counted on a pixel mask."""
    x0, y0, x1, y1 = box
    mask = torch.zeros(SIZE, SIZE)
    mask[y0:y1, x0:x1] = 1.0
    return mask.view(GRID[0], PATCH, GRID[1], PATCH).mean((1, 3)).flatten()


def box_named_by(sentence: str):
    """The box of the object a SynthLong sentence describes, from its words alone (None: the intro)."""
    place = PLACE.search(sentence)
    if place is None or "synthetic scene" in sentence:
        return None
    row, col = POSITIONS[place.group()]
    size = "small" if re.search(r"\bsmall\b", sentence) else "large"
    return SceneObject("circle", "red", size, "solid", row, col).box(SIZE)


class PositionCodedModel:
    """What ``relevance_maps`` calls on a MulCLIP module, with features whose maps are known."""

    def __init__(self):
        self.device, self.sap_top_k = torch.device("cpu"), None
        self.hparams = SimpleNamespace(tau_s=TAU)
        patches = GRID[0] * GRID[1]
        image = SimpleNamespace(v_loc=torch.eye(patches)[None], v_cls=torch.ones(1, patches))
        visual = SimpleNamespace(grid_size=GRID)
        self.encode_patches = lambda pixels: image
        self.backbone = SimpleNamespace(context_length=248, clip=SimpleNamespace(visual=visual))
        self.texts: dict[bytes, torch.Tensor] = {}

    def learn(self, sentences: list[str]) -> None:
        tokens = LongTextTokenizer(248)(sentences)
        for row, sentence in zip(tokens, sentences):
            box = box_named_by(sentence)
            feature = coverage(box) if box else torch.ones(GRID[0] * GRID[1])
            self.texts[row.numpy().tobytes()] = F.normalize(feature, dim=0)

    def encode_text(self, tokens):
        return torch.stack([self.texts[row.numpy().tobytes()] for row in tokens])

    def eval(self):
        return self

    def preprocess_config(self):
        return {"image_size": SIZE, "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0), "context_length": 248}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = generate(tmp_path_factory.mktemp("synth"), image_size=SIZE, seed=5, sizes={"val": 12})
    records = [json.loads(line) for line in (root / "val.jsonl").read_text().splitlines()]
    model = PositionCodedModel()
    for record in records:
        model.learn([record["caption"], *re.split(r"(?<=\.)\s+", record["caption"])])
    return root, records, model


def expected_shares(box):
    """In-box share of the cosine map (the box itself) and of the SAP map (its softmax), by hand."""
    cover = coverage(box)
    cosine = cover / cover.norm()
    sap = torch.softmax(cosine / TAU, dim=0)
    return float((cosine * cover).sum() / cosine.sum()), float((sap * cover).sum())


def test_every_sentence_map_is_its_objects_box(scenes):
    root, records, model = scenes
    from PIL import Image

    for record in records:
        explanation = relevance_maps(model, Image.open(root / record["image"]).convert("RGB"), record["caption"])
        shares = object_shares([explanation], [record["objects"]])[0]
        for j, obj in enumerate(record["objects"]):
            cosine, sap = expected_shares(tuple(obj["box"]))
            assert shares["cosine"][j] == pytest.approx(cosine, abs=1e-5)
            assert shares["sap"][j] == pytest.approx(sap, abs=1e-5)
            assert shares["sap"][j] > 0.5 > 4 * shares["chance"][j]  # far above what a uniform map scores


def test_benchmark_and_interval_report_the_known_answer(scenes):
    root, records, model = scenes
    figure = localization(model, records, root, samples=200)
    expected = [expected_shares(tuple(o["box"]))[1] for r in records for o in r["objects"]]
    assert figure.objects == len(expected) and figure.images == len(records)
    assert figure.sap.mean == pytest.approx(sum(expected) / len(expected), abs=1e-5)
    assert figure.sap.low <= figure.sap.mean <= figure.sap.high
    assert figure.sap_minus_chance.low > 0.4  # the interval excludes chance by far
    assert object_localization(model, records, root)["sap"] == pytest.approx(figure.sap.mean, abs=1e-9)


def test_a_uniform_map_scores_chance_and_the_interval_covers_it(scenes):
    root, records, model = scenes
    for key in list(model.texts):
        model.texts[key] = F.normalize(torch.ones(GRID[0] * GRID[1]), dim=0)
    try:
        figure = localization(model, records, root, samples=200)
    finally:
        model.texts.clear()
        for record in records:
            model.learn([record["caption"], *re.split(r"(?<=\.)\s+", record["caption"])])
    assert figure.sap.mean == pytest.approx(figure.chance, abs=1e-6)
    assert figure.sap_minus_chance.mean == pytest.approx(0.0, abs=1e-6)


def test_bootstrap_resamples_images_not_objects():
    one_image = bootstrap_mean([[0.0, 1.0, 0.0, 1.0]], samples=50)
    assert (one_image.low, one_image.mean, one_image.high) == (0.5, 0.5, 0.5)  # one image: nothing varies
    spread = bootstrap_mean([[0.0] * 3, [1.0] * 3, [0.5]], samples=400)
    assert spread.mean == pytest.approx(3.5 / 7)
    assert spread.low < spread.mean < spread.high and not math.isnan(spread.low)
