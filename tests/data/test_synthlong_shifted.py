"""SynthLong's cross-domain set shares the world of objects but none of the wording, order or look."""

import json
import random
import re

import pytest
from PIL import Image

from mulclip_pl.data import SynthLongShifted
from mulclip_pl.data.synthlong.generator import generate
from mulclip_pl.data.synthlong.negatives import KINDS, negative
from mulclip_pl.data.synthlong.scenes import COLOURS, SIZES, SceneObject
from mulclip_pl.data.synthlong.shifted import PALETTE, POSITION_WORDS, SHIFTED
from tests.data.synthlong_templates import TRAINING_ATTRIBUTE_WORDS
from tests.data.synthlong_templates import sentences as _sentences
from tests.data.synthlong_templates import template as _template
from tests.data.synthlong_templates import texts as _texts
from tests.data.synthlong_templates import words as _words


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthlong")
    generate(root / "train", image_size=16, sizes={"train": 150})
    generate(root / "shifted", image_size=64, sizes={"test": 40}, domain="shifted")
    return root


def test_no_sentence_template_of_the_shifted_set_occurs_in_training_captions(written):
    train = {_template(s) for text in _texts(written / "train" / "train.jsonl") for s in _sentences(text)}
    shifted = {_template(s) for text in _texts(written / "shifted" / "test.jsonl") for s in _sentences(text)}
    # The stripping is real: each side is a handful of templates, not one per sentence.
    assert "In the _ of the picture there is a _ with _." in train and len(train) <= 12
    assert "Toward the _ sits a _, _." in shifted and len(shifted) <= 12
    assert train.isdisjoint(shifted)
    trigrams = [{g for t in side for part in t.split("_") for g in zip(*(part.split()[k:] for k in range(3)))}
                for side in (train, shifted)]
    assert trigrams[0].isdisjoint(trigrams[1])  # not even three words in a row are shared


def test_shifted_captions_use_none_of_the_training_attribute_words(written):
    words = " ".join(_texts(written / "shifted" / "test.jsonl")).lower()
    assert [w for w in sorted(TRAINING_ATTRIBUTE_WORDS) if re.search(rf"\b{w}\b", words)] == []


def test_sentences_and_object_lists_follow_the_grid_in_reading_order(written):
    """Positives and every negative alike: the order of the sentences tells nothing."""
    cells = {phrase: cell for cell, phrase in POSITION_WORDS.items()}
    position = re.compile("|".join(sorted(cells, key=len, reverse=True)))
    for text in _texts(written / "shifted" / "test.jsonl"):
        if not text.startswith("An arrangement"):  # summaries name no position
            order = [cells[p] for p in position.findall(text)]
            assert order == sorted(order), text
    rows = [json.loads(line) for line in (written / "shifted" / "test.jsonl").read_text().splitlines()]
    assert all([(o["row"], o["col"]) for o in r["objects"]] == sorted((o["row"], o["col"]) for o in r["objects"])
               for r in rows)  # sentence j describes object j-1, as the localisation scores assume


SCENE = [SceneObject("cross", "green", "small", "outlined", 2, 2), SceneObject("circle", "red", "small", "solid", 0, 0),
         SceneObject("square", "blue", "large", "striped", 1, 1)]
TRUTH = SHIFTED.caption(SCENE, [0, 1, 2])


@pytest.mark.parametrize("seed", range(3))
def test_every_kind_of_negative_is_wrong_in_its_own_way(seed):
    wrong = {kind: negative(kind, SCENE, [0, 1, 2], random.Random(seed), SHIFTED.caption) for kind in KINDS}
    assert all(text != TRUTH for text in wrong.values())
    for kind in ("binding", "position"):  # the same words, given to other objects
        assert _words(wrong[kind]) == _words(TRUTH), kind
    assert _sentences(wrong["count"])[1:] == _sentences(TRUTH)[1:]
    assert len(_sentences(wrong["absent"])) == len(_sentences(TRUTH)) + 1
    for kind in ("colour", "shape", "size"):
        changed = [(a, b) for a, b in zip(_sentences(TRUTH), _sentences(wrong[kind])) if a != b]
        assert len(changed) == 1 and sum(x != y for x, y in zip(*(c.split() for c in changed[0]))) == 1, kind


def test_rendering_is_shifted_but_the_boxes_are_where_the_records_say(written):
    row = next(r for r in map(json.loads, (written / "shifted" / "test.jsonl").read_text().splitlines())
               if any(o["texture"] == "solid" for o in r["objects"]))
    image = Image.open(written / "shifted" / row["image"]).convert("RGB")
    corner = image.getpixel((0, 0))
    assert max(corner) - min(corner) >= 10  # a tinted backdrop, not SynthLong's grey
    solid = next(o for o in row["objects"] if o["texture"] == "solid")
    x0, y0, x1, y1 = solid["box"]
    assert image.getpixel(((x0 + x1) // 2, (y0 + y1) // 2 + 1)) == PALETTE[solid["colour"]] != COLOURS[solid["colour"]]
    cell = 64 / 3
    assert (x1 - x0) < 2 * SIZES[solid["size"]] * cell  # smaller than SynthLong draws the same size


def test_datamodule_has_only_a_test_split_generated_in_its_own_root(tmp_path, monkeypatch):
    from mulclip_pl.data.synthlong import generator as synthlong

    monkeypatch.setattr(synthlong, "SHIFTED_SPLITS", {"test": 5})
    dm = SynthLongShifted(root=str(tmp_path / "shifted"), image_px=32, num_workers=0)
    assert dm.name == "synthlong_shifted" and dm.available_splits() == ("test",)
    dm.prepare_data()
    assert len((tmp_path / "shifted" / "test.jsonl").read_text().splitlines()) == 5
    assert not (tmp_path / "shifted" / "train.jsonl").exists()
    assert json.loads((tmp_path / "shifted" / "DONE").read_text())["domain"] == "shifted"
