"""``mulclip-pl prepare``: CLI, manifest, skipped items, resume, shrinking."""

import json
import shutil

import datasets
import pytest
from PIL import Image

from mulclip_pl.cli import main
from mulclip_pl.data import GenericCaptions
from mulclip_pl.data.prepared import prepare as prepare_module
from mulclip_pl.data.prepared.datamodules import Prepared
from mulclip_pl.data.prepared.prepare import prepare
from mulclip_pl.data.prepared.store import open_prepared
from mulclip_pl.errors import DataError
from mulclip_pl.tokenizer import LongTextTokenizer


def _with_bad_items(synth, tmp_path):
    """The 12 SynthLong rows plus a row with a missing image, one with an undecodable image, one without caption."""
    lines = (synth / "train.jsonl").read_text().splitlines()
    (tmp_path / "broken.png").write_bytes(b"not an image")
    extra = [{"id": "missing", "image": str(synth / "images" / "nope.png"), "caption": "A cat."},
             {"id": "broken", "image": str(tmp_path / "broken.png"), "caption": "A dog. It runs."},
             {"id": "nocaption", "image": json.loads(lines[0])["image"]}]
    rows = [json.loads(line) for line in lines]
    for row in rows:
        row["image"] = str(synth / row["image"])
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows[:6] + extra + rows[6:]))
    return path


def test_cli_prepare_writes_tokens_manifest_and_lists_every_skipped_item(synth12, tmp_path):
    source = _with_bad_items(synth12, tmp_path)
    main(["prepare", "--data", "GenericCaptions", "--data.train_file", str(source), "--out", str(tmp_path / "out"),
          "--shard_size", "4", "--data.context_length", "77"])
    table, manifest = open_prepared(tmp_path / "out")
    plain = LongTextTokenizer(77, warn=False)
    rows = GenericCaptions(train_file=str(synth12 / "train.jsonl")).load("train", "train")
    over_77 = sum(plain.count_tokens(r.caption) > 77 for r in rows)
    assert 0 < over_77 < 12
    assert manifest["counts"] == {"source_records": 15, "rows": 12, "skipped": 3, "truncated_captions": over_77}
    assert sorted(s["item"] for s in manifest["skipped"]) == ["broken", "missing", "train.jsonl:9"]
    assert {s["item"]: s["reason"].split(":")[0] for s in manifest["skipped"]}["broken"] == "unreadable image"
    assert manifest["tokenizer"] == LongTextTokenizer(77).identity() and manifest["context_length"] == 77
    assert [s["rows"] for s in manifest["shards"]] == [4, 3, 4, 1] and len(table) == 12  # "broken" was in shard 1
    for row, record in zip(table, rows):
        assert row["id"] == record.id and row["caption"] == record.caption and row["summary"] == record.summary
        assert row["image"] == Image.open(record.image)  # the original file's pixels
        expected = plain(record.caption)[0]
        assert row["caption_ids"] == expected[expected.ne(0)].tolist()
        assert row["caption_tokens"] == plain.count_tokens(record.caption)
        assert row["sentence_ids"][0] == plain(row["sentences"][0])[0][: len(row["sentence_ids"][0])].tolist()
    assert datasets.load_from_disk(str(tmp_path / "out" / manifest["shards"][2]["path"]))[0]["id"] == rows[7].id


def test_interrupted_prepare_resumes_and_keeps_finished_shards(synth12, tmp_path, monkeypatch):
    data = GenericCaptions(train_file=str(synth12 / "train.jsonl"))
    written, original = [], prepare_module.write_shard

    def crash_on_third(job):
        if job.index == 2 and not written.count("crashed"):
            written.append("crashed")
            raise KeyboardInterrupt
        written.append(job.index)
        return original(job)

    monkeypatch.setattr(prepare_module, "write_shard", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        prepare(data=data, out=str(tmp_path / "out"), shard_size=3)
    with pytest.raises(DataError, match="prepare did not finish"):
        open_prepared(tmp_path / "out")
    prepare(data=data, out=str(tmp_path / "out"), shard_size=3)
    assert written == [0, 1, "crashed", 2, 3]  # shards 0 and 1 were not written again
    resumed, _ = open_prepared(tmp_path / "out")
    prepare(data=data, out=str(tmp_path / "fresh"), shard_size=3)
    fresh, _ = open_prepared(tmp_path / "fresh")
    assert resumed.to_dict() == fresh.to_dict()
    with pytest.raises(DataError, match="written from other records or settings"):
        prepare(data=data, out=str(tmp_path / "out"), shard_size=3, min_side=16)


def test_min_side_shrinks_stored_images(synth12, tmp_path):
    prepare(data=GenericCaptions(train_file=str(synth12 / "train.jsonl")), out=str(tmp_path / "out"), min_side=16)
    table, manifest = open_prepared(tmp_path / "out")
    assert manifest["min_side"] == 16 and {row["image"].size for row in table} == {(16, 16)}
    shutil.rmtree(tmp_path / "out")


def test_shards_of_an_older_format_are_refused_with_the_reason_and_rewritten(synth12, tmp_path, monkeypatch):
    """v1 shrank phone photos without their EXIF orientation: such data must not train silently."""
    data, out = GenericCaptions(train_file=str(synth12 / "train.jsonl")), tmp_path / "out"
    prepare(data=data, out=str(out), shard_size=5)
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "format": "mulclip-pl prepared v1"}))
    for marker in out.glob("shards/*/done.json"):  # v1 markers carried no format
        marker.write_text(json.dumps({k: v for k, v in json.loads(marker.read_text()).items() if k != "format"}))
    with pytest.raises(DataError, match=r"older `mulclip-pl prepare`: .*EXIF orientation.* Rerun") as refused:
        Prepared(path=str(out)).setup("fit")
    assert "\n" not in str(refused.value)
    written, original = [], prepare_module.write_shard
    monkeypatch.setattr(prepare_module, "write_shard", lambda job: (written.append(job.index), original(job)))
    prepare(data=data, out=str(out), shard_size=5)  # the same command, as the message says
    assert written == [0, 1, 2]
    assert len(open_prepared(out)[0]) == 12
