"""A caption is tokenised once (through its sentences) and still equals the plain tokenizer's output."""

import random

import pytest
import torch

from mulclip_pl.data import COCO, DCI, DOCCI, GenericCaptions, ShareGPT4V, Urban1K
from mulclip_pl.data.datasets import CaptionEncoder
from mulclip_pl.data.records import ProblemLog, Record
from mulclip_pl.data.synthlong.generator import generate
from mulclip_pl.data.text import SentenceSplitter, select_sentences, summary_for
from mulclip_pl.tokenizer import LongTextTokenizer
from tests.data import fixtures


def _fixture_records(root) -> list[Record]:
    fixtures.write_docci(root / "docci")
    fixtures.write_urban1k(root / "urban")
    fixtures.write_dci(root / "dci")
    json_file = fixtures.write_sharegpt4v(root / "share")
    fixtures.write_karpathy(root / "coco")
    generic = fixtures.write_generic(root / "generic")
    modules = [(DOCCI(root=str(root / "docci"), val_fraction=0), ("train", "test")),
               (Urban1K(root=str(root / "urban")), ("test",)), (DCI(root=str(root / "dci")), ("test",)),
               (ShareGPT4V(json_file=str(json_file), image_root=str(root / "share" / "images"), train_slice="0:"),
                ("train",)),
               (COCO(root=str(root / "coco")), ("test",)), (GenericCaptions(train_file=str(generic)), ("train",))]
    records = [r for dm, splits in modules for split in splits for r in dm.read_records(split, ProblemLog())]
    # COCO's extra captions are captions too
    return records + [Record(f"{r.id}/{i}", r.image, c) for r in records for i, c in enumerate(r.extra_captions)]


@pytest.fixture(scope="module")
def captions(tmp_path_factory) -> list[Record]:
    root = tmp_path_factory.mktemp("captions")
    synth = generate(root / "synth", image_size=16, sizes={"train": 40})
    records = GenericCaptions(train_file=str(synth / "train.jsonl")).read_records("train", ProblemLog())
    over_long = Record("long", synth, " ".join(r.caption for r in records[:4]), summary="four scenes")
    return records + _fixture_records(root) + [over_long]


def _plain(record: Record, tokenizer, splitter, max_sentences, rng) -> dict:
    """What CaptionEncoder computed before: every text through the plain tokenizer."""
    sentences = splitter(record.caption) or [record.caption]
    chosen = select_sentences(sentences, max_sentences, "random", rng)
    subs = torch.zeros(max_sentences, tokenizer.context_length, dtype=torch.long)
    subs[: len(chosen)] = tokenizer(chosen)
    return {"long": tokenizer(record.caption)[0], "short": tokenizer(summary_for(sentences, record.summary))[0],
            "sub": subs, "sub_mask": torch.arange(max_sentences) < len(chosen)}


def test_caption_tokens_equal_the_plain_tokenizer(captions):
    tokenizer, splitter = LongTextTokenizer(warn=False), SentenceSplitter()
    encoder = CaptionEncoder(LongTextTokenizer(warn=False), splitter, max_sentences=4)
    assert len(captions) > 60 and any(len(splitter(r.caption)) > 4 for r in captions)
    for record in captions:
        got = encoder(record, random.Random(record.id))
        expected = _plain(record, tokenizer, splitter, 4, random.Random(record.id))
        for key, value in expected.items():
            assert torch.equal(got[key], value), (record.id, key, record.caption)
    assert tokenizer.n_truncated == 1  # the over-long caption, cut the same way
    assert encoder(captions[-1])["n_truncated"] == 1 and encoder(captions[0])["n_truncated"] == 0


def test_each_text_is_bpe_encoded_once(captions, monkeypatch):
    encoder = CaptionEncoder(LongTextTokenizer(warn=False), SentenceSplitter(), max_sentences=2)
    record = next(r for r in captions if r.summary and len(SentenceSplitter()(r.caption)) > 3)
    encoded = []
    bpe = encoder.tokenizer._bpe  # every path to BPE goes through SimpleTokenizer.encode
    original = bpe.encode
    monkeypatch.setattr(bpe, "encode", lambda text: encoded.append(text) or original(text))
    encoder(record)
    assert encoded == [*SentenceSplitter()(record.caption), record.summary]
