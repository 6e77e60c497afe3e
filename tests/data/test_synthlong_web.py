"""Stage 1's alt-text set covers both domains' words and looks, and none of the shifted set's long captions."""

import collections
import itertools
import json
import re

import open_clip

import pytest
import yaml
from PIL import Image

from mulclip_pl.data.synthlong import generator as synthlong
from mulclip_pl.data.synthlong.generator import generate as generate_synthlong
from mulclip_pl.data.synthlong.scenes import COLOURS, LOOK, TEXTURE_PHRASES, SceneObject
from mulclip_pl.data.synthlong.shifted import COLOUR_WORDS, PLURALS, POSITION_WORDS, SHIFTED, SIZE_WORDS, TEXTURE_WORDS
from mulclip_pl.data.synthlong.web import COUNT_WORDS, SynthLongWeb, generate, split_sizes
from tests.data.synthlong_templates import sentences as _sentences, template as _template, texts as _texts

SIZES = {"train": 240, "val": 8, "test_synthlong": 30, "test_shifted": 30}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthlong")
    generate(root / "web", image_size=32, sizes=SIZES)
    generate_synthlong(root / "shifted", image_size=32, sizes={"test": 60}, domain="shifted")
    return root


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _trigrams(templates):
    return {g for t in templates for part in t.split("_") for g in zip(*(part.split()[k:] for k in range(3)))}


def test_no_shifted_long_caption_template_or_phrase_is_in_stage_1_captions(written):
    web = {text for split in SIZES for row in _rows(written / "web" / f"web_{split}.jsonl")
           for text in (row["caption"], row["summary"])}
    shifted_texts = list(_texts(written / "shifted" / "test.jsonl"))
    assert web.isdisjoint(shifted_texts)  # no caption, negative or summary of the shifted set
    shifted = {_template(s) for text in shifted_texts for s in _sentences(text)}
    stage1 = {_template(s) for text in web for s in _sentences(text)}
    assert "Toward the _ sits a _, _." in shifted and len(shifted) <= 12  # the stripping is real
    assert stage1.isdisjoint(shifted)
    assert _trigrams(stage1).isdisjoint(_trigrams(shifted))  # not even three template words in a row
    assert all(len(_sentences(text)) == 1 for text in web)  # alt text: one sentence, never a long caption


# An independent reading of the captions: each object phrase back to the attributes it states.
_SHIFTED_POSITIONS = {word: cell for cell, word in POSITION_WORDS.items()}
_PHRASE = re.compile(
    r"\b(?P<count>an?|two|three|four|five|six|[2-6]) (?:(?P<size>small|large|tiny|big) )?(?P<colour>\w+) "
    r"(?P<shape>circles?|squares?|triangles?|cross(?:es)?)"
    r"(?: with (?P<texture>a solid fill|horizontal stripes|only its outline drawn)| that (?:is|are) (?P<shifted_texture>"
    + "|".join(TEXTURE_WORDS.values()) + r"))?(?: in the (?P<position>(?:top|middle|bottom) (?:left|center|right)|center)"
    r"| at the (?P<shifted_position>" + "|".join(POSITION_WORDS.values()) + r"))?")
_SINGULAR = {plural: shape for shape, plural in PLURALS.items()}
_COUNTS = {"a": 1, "an": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6}


def _stated(caption):
    """[(how many, {attribute: value})] for each object phrase of ``caption``, in SynthLong's values."""
    colours = {**{c: c for c in COLOURS}, **{w: c for c, w in COLOUR_WORDS.items()}}
    sizes = {**{s: s for s in ("small", "large")}, **{w: s for s, w in SIZE_WORDS.items()}}
    textures = {**{p: t for t, p in TEXTURE_PHRASES.items()}, **{w: t for t, w in TEXTURE_WORDS.items()}}
    stated = []
    for m in _PHRASE.finditer(caption[0].lower() + caption[1:]):
        if m["colour"] not in colours:
            continue  # '5 shapes', 'two items'
        facts = {"shape": _SINGULAR.get(m["shape"], m["shape"]), "colour": colours[m["colour"]]}
        if m["size"]:
            facts["size"] = sizes[m["size"]]
        if m["texture"] or m["shifted_texture"]:
            facts["texture"] = textures[m["texture"] or m["shifted_texture"]]
        if m["position"]:
            facts["cell"] = next((r, c) for r in range(3) for c in range(3)
                                 if SceneObject("circle", "red", "small", "solid", r, c).position == m["position"])
        if m["shifted_position"]:
            facts["cell"] = _SHIFTED_POSITIONS[m["shifted_position"]]
        count = int(m["count"]) if m["count"].isdigit() else _COUNTS[m["count"]]
        stated.append((count, facts))
    return stated


def _fits(stated, objects):
    """Does the caption describe exactly this image: as many objects, each phrase true of its own one?"""
    wanted = [facts for count, facts in stated for _ in range(count)]
    if len(wanted) != len(objects):
        return False
    values = [{**o, "cell": (o["row"], o["col"])} for o in objects]
    return any(all(values[j][k] == v for facts, j in zip(wanted, order) for k, v in facts.items())
               for order in itertools.permutations(range(len(objects))))


def test_every_caption_names_every_object_of_its_image_truly(written):
    for split in SIZES:
        for row in _rows(written / "web" / f"web_{split}.jsonl"):
            assert _fits(_stated(row["caption"]), row["objects"]), row["caption"]


@pytest.mark.parametrize("domain", ["synthlong", "shifted"])
def test_almost_no_test_caption_fits_another_test_image(tmp_path, domain):
    """Alt text that fits many images makes a contrastive batch mostly false negatives and the
    short-caption test unanswerable; at the full 1000 test pairs, under 1% of captions fit a second image."""
    split = f"test_{domain}"
    generate(tmp_path, image_size=24, sizes={split: split_sizes()[split]})
    rows = _rows(tmp_path / f"web_{split}.jsonl")
    by_kinds = collections.defaultdict(list)  # shape and colour are always named: only equal multisets can fit
    for row in rows:
        by_kinds[tuple(sorted((o["shape"], o["colour"]) for o in row["objects"]))].append(row)
    ambiguous = 0
    for row in rows:
        stated = _stated(row["caption"])
        kinds = tuple(sorted((facts["shape"], facts["colour"]) for count, facts in stated for _ in range(count)))
        ambiguous += sum(_fits(stated, other["objects"]) for other in by_kinds[kinds]) > 1
    assert len(rows) == 1000 and ambiguous / len(rows) < 0.01, ambiguous


def test_counts_are_written_in_digits_and_in_words_in_both_vocabularies(written):
    rows = _rows(written / "web" / "web_train.jsonl")
    counted = re.compile(r"\b(?:(?P<digit>[2-6])|(?P<word>two|three|four|five|six)) (?:shapes|items|objects|\w+ \w+e?s)\b")
    for vocabulary in ("synthlong", "shifted"):
        found = [m for r in rows if r["vocabulary"] == vocabulary for m in counted.finditer(r["caption"])]
        assert any(m["digit"] for m in found) and any(m["word"] for m in found), vocabulary
    for row in rows:  # a stated total is the true one
        total = re.search(r"\b(\w+) (?:shapes|items|objects)\b", row["caption"])
        if total:
            assert total[1].lower() in (str(len(row["objects"])), COUNT_WORDS[len(row["objects"])]), row["caption"]


def test_captions_fit_in_77_tokens_so_no_object_is_cut(written):
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    captions = [r["caption"] for s in SIZES for r in _rows(written / "web" / f"web_{s}.jsonl")]
    lengths = (tokenizer(captions) != 0).sum(dim=1)
    assert int(lengths.max()) < 77


def test_training_split_mixes_both_vocabularies_and_both_looks_and_test_splits_hold_one_each(written):
    train = _rows(written / "web" / "web_train.jsonl")
    pairs = {(row["look"], row["vocabulary"]) for row in train}
    assert pairs == {(a, b) for a in ("synthlong", "shifted") for b in ("synthlong", "shifted")}
    shifted_words = [*COLOUR_WORDS.values(), *SIZE_WORDS.values(), *TEXTURE_WORDS.values(), *POSITION_WORDS.values()]
    text = " ".join(row["caption"] for row in train if row["vocabulary"] == "shifted")
    assert all(word in text for word in shifted_words)  # every shifted attribute word is trained on
    for domain, look in (("synthlong", LOOK), ("shifted", SHIFTED.look)):
        rows = _rows(written / "web" / f"web_test_{domain}.jsonl")
        assert {(r["look"], r["vocabulary"]) for r in rows} == {(domain, domain)}
        corner = Image.open(written / "web" / rows[0]["image"]).convert("RGB").getpixel((0, 0))
        assert (len(set(corner)) == 1) == (look is LOOK)  # grey backdrop in SynthLong's look, tinted otherwise


def test_sizes_follow_synthlongs_splits_and_share_a_folder_with_it(tmp_path, monkeypatch):
    """Runs that shrink SynthLong (tests, the fingerprint) shrink this set; both may live in one root."""
    monkeypatch.setattr(synthlong, "SPLITS", {"train": 4, "val": 2, "test": 3})
    assert split_sizes() == {"train": 8, "val": 2, "test_synthlong": 2, "test_shifted": 2}  # 2 per pair
    module = SynthLongWeb(root=str(tmp_path), image_px=32, test_domain="shifted", num_workers=0)
    module.setup("test")
    synthlong.ensure_generated(tmp_path, image_size=32)
    assert module.name == "web_shifted" and len(module.eval_sets("test")[0].dataset) == 2
    assert {p.name for p in tmp_path.glob("web_*.jsonl")} == {f"web_{s}.jsonl" for s in split_sizes()}
    assert (tmp_path / "train.jsonl").is_file() and (tmp_path / "WEB_DONE").is_file()


def test_stage_1_trains_on_alt_text_and_stage_2_on_synthlong_long_captions_only():
    stage1 = yaml.safe_load(open("configs/synthlong/stage1.yaml"))
    stage2 = yaml.safe_load(open("configs/synthlong/stage2.yaml"))
    assert stage1["data"]["class_path"] == "mulclip_pl.data.SynthLongWeb"
    assert stage1["model"]["long_weight"] == 0.0 and stage1["model"]["context_length"] == 77
    assert stage2["data"]["class_path"] == "mulclip_pl.data.SynthLong"  # the shifted set is never a training set
