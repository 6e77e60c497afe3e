"""Stage 1's alt-text set covers both domains' words and looks, and none of the shifted set's long captions."""

import json
import re

import pytest
import yaml
from PIL import Image

from mulclip_pl.data.synthlong import generator as synthlong
from mulclip_pl.data.synthlong.generator import generate as generate_synthlong
from mulclip_pl.data.synthlong.scenes import LOOK
from mulclip_pl.data.synthlong.shifted import COLOUR_WORDS, POSITION_WORDS, SHIFTED, SIZE_WORDS, TEXTURE_WORDS
from mulclip_pl.data.synthlong.web import SynthLongWeb, generate, split_sizes
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


def test_captions_name_one_or_two_objects_with_one_or_two_attributes_each(written):
    shapes = re.compile(r"\b(circle|square|triangle|cross)\b")
    for row in _rows(written / "web" / "web_train.jsonl"):
        named = shapes.findall(row["caption"])
        assert 1 <= len(named) <= 2, row["caption"]
        assert set(named) <= {o["shape"] for o in row["objects"]}  # true of the image


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
    assert split_sizes() == {"train": 24, "val": 2, "test_synthlong": 2, "test_shifted": 2}
    module = SynthLongWeb(root=str(tmp_path), image_px=32, test_domain="shifted", num_workers=0)
    module.setup("test")
    synthlong.ensure_generated(tmp_path, image_size=32)
    assert module.name == "web_shifted" and len(module.eval_sets("test")[0].dataset) == 2
    assert {p.name for p in tmp_path.glob("web_*.jsonl")} == {f"web_{s}.jsonl" for s in split_sizes()}
    assert (tmp_path / "train.jsonl").is_file() and (tmp_path / "WEB_DONE").is_file()


def test_stage_1_trains_on_alt_text_and_stage_2_on_synthlong_long_captions_only():
    stage1 = yaml.safe_load(open("configs/synthlong/stage1.yaml"))
    stage2 = yaml.safe_load(open("configs/synthlong/stage2.yaml"))
    assert stage1["data"]["class_path"] == "mulclip_pl.data.synthlong_web.SynthLongWeb"
    assert stage1["model"]["long_weight"] == 0.0 and stage1["model"]["context_length"] == 77
    assert stage2["data"]["class_path"] == "mulclip_pl.data.SynthLong"  # the shifted set is never a training set
