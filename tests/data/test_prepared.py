"""Prepared shards and users' `datasets` data give the raw path's training batches; bad input is refused."""

import io
import json
import shutil
import tarfile
from types import SimpleNamespace

import datasets
import pytest
import torch

from mulclip_pl.cli import main
from mulclip_pl.data import GenericCaptions, HFCaptions, Prepared
from mulclip_pl.data.prepared.store import FEATURES, MANIFEST
from mulclip_pl.errors import DataError
from tests.helpers.prepared import rewrite_shard

FIELDS = ("index", "image", "long", "short", "sub", "sub_mask", "n_truncated")
COMMON = dict(batch_size=4, num_workers=0, image_size=32, max_sentences=3)


def _ready(dm):
    dm.trainer = None
    dm.setup("fit")
    return dm


def _raw(synth):
    return _ready(GenericCaptions(train_file=str(synth / "train.jsonl"), **COMMON))


def _assert_same_batches(raw, other):
    """Map-style: the same batches in the same order. Streaming: each sample equals the raw one of its index."""
    batches = list(other.train_dataloader())
    seen = [i for b in batches for i in b["index"].tolist()]
    assert len(seen) == len(set(seen)) == 12
    if not other.streaming:
        for expected, got in zip(raw.train_dataloader(), batches, strict=True):
            for key in FIELDS:
                assert torch.equal(torch.as_tensor(expected[key]), torch.as_tensor(got[key])), key
        return
    for batch in batches:
        for j, index in enumerate(batch["index"].tolist()):
            expected = raw.train_set[(0, index)]
            for key in FIELDS[1:-1]:
                assert torch.equal(expected[key], batch[key][j]), key


@pytest.mark.parametrize("streaming", [False, True])
def test_prepared_batches_equal_the_raw_path(synth12, prepared12, streaming):
    _assert_same_batches(_raw(synth12), _ready(Prepared(path=str(prepared12), streaming=streaming, **COMMON)))


def _user_table(synth):
    records = GenericCaptions(train_file=str(synth / "train.jsonl")).load("train", "train")
    return records, datasets.Dataset.from_dict(
        {"picture": [{"bytes": r.image.read_bytes(), "path": r.image.name} for r in records],
         "text": [r.caption for r in records], "short": [r.summary for r in records], "key": [r.id for r in records]},
        features=datasets.Features({"picture": datasets.Image(), "text": datasets.Value("string"),
                                    "short": datasets.Value("string"), "key": datasets.Value("string")}))


def _write_user_data(synth, root, fmt):
    records, table = _user_table(synth)
    if fmt == "arrow":
        table.save_to_disk(str(root / "arrow"))
        return root / "arrow", {"image": "picture", "caption": "text", "summary": "short", "id": "key"}
    if fmt == "parquet":
        (root / "parquet").mkdir()
        table.select(range(5)).to_parquet(str(root / "parquet" / "a.parquet"))
        table.select(range(5, 12)).to_parquet(str(root / "parquet" / "b.parquet"), batch_size=3)  # 3 row groups
        return root / "parquet", {"image": "picture", "caption": "text", "summary": "short", "id": "key"}
    for name, part in (("a.tar", records[:7]), ("b.tar", records[7:])):
        with tarfile.open(root / name, "w") as tar:
            for r in part:
                for ext, data in (("png", r.image.read_bytes()), ("txt", r.caption.encode()),
                                  ("json", json.dumps({"summary": r.summary}).encode())):
                    info = tarfile.TarInfo(f"{r.id}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return root, {"image": "png", "summary": "json.summary"}


@pytest.mark.parametrize("fmt,streaming", [("arrow", False), ("parquet", False), ("webdataset", False),
                                           ("arrow", True), ("parquet", True), ("webdataset", True)])
def test_users_datasets_data_gives_the_raw_batches(synth12, tmp_path, fmt, streaming):
    path, columns = _write_user_data(synth12, tmp_path, fmt)
    dm = HFCaptions(path=str(path), format=fmt, columns=columns, streaming=streaming, cache_dir=str(tmp_path / "c"),
                    **COMMON)
    _assert_same_batches(_raw(synth12), _ready(dm))


def test_missing_user_column_names_expected_and_found(synth12, tmp_path):
    path, _ = _write_user_data(synth12, tmp_path, "arrow")
    with pytest.raises(DataError, match=r"missing column\(s\) \{'caption': 'caption'\}.*found columns \['key', 'picture'"):
        _ready(HFCaptions(path=str(path), columns={"image": "picture"}, **COMMON))


def _copy(prepared, tmp_path):
    shutil.copytree(prepared, tmp_path / "copy")
    return tmp_path / "copy"


def test_truncated_or_corrupt_shard_is_refused(prepared12, tmp_path):
    root = _copy(prepared12, tmp_path)
    arrow = next((root / "shards" / "shard-00001").glob("*.arrow"))
    size = arrow.stat().st_size
    arrow.write_bytes(arrow.read_bytes()[: size // 2])
    with pytest.raises(DataError, match=f"shard-00001.*should have {size} bytes, found {size // 2} bytes"):
        _ready(Prepared(path=str(root), **COMMON))
    arrow.write_bytes(b"\0" * size)
    with pytest.raises(DataError, match="shard-00001: unreadable"):
        _ready(Prepared(path=str(root), **COMMON))


def test_missing_prepared_column_is_refused(prepared12, tmp_path):
    root = _copy(prepared12, tmp_path)
    rewrite_shard(root, 2, datasets.load_from_disk(str(root / "shards" / "shard-00002")).remove_columns("sentence_ids"))
    with pytest.raises(DataError, match=r"shard-00002: missing column\(s\) \['sentence_ids'\]; expected \[.*found"):
        _ready(Prepared(path=str(root), **COMMON))


def test_tokens_for_another_context_or_tokenizer_are_refused(prepared12, tmp_path):
    with pytest.raises(DataError, match="context_length: expected 77, found 248"):
        _ready(Prepared(path=str(prepared12), **{**COMMON, "context_length": 77}))
    root = _copy(prepared12, tmp_path)
    manifest = json.loads((root / MANIFEST).read_text())
    manifest["tokenizer"]["vocab"] = "0123456789ab"
    (root / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="vocab: expected '[0-9a-f]{12}', found '0123456789ab'"):
        _ready(Prepared(path=str(root), **COMMON))


def test_undecodable_prepared_image_is_skipped_and_counted_or_raised(prepared12, tmp_path):
    root = _copy(prepared12, tmp_path)
    rows = datasets.load_from_disk(str(root / "shards" / "shard-00000")).cast_column("image", datasets.Image(decode=False))
    rows = rows.to_list()
    rows[1]["image"]["bytes"] = b"garbage"
    broken = datasets.Dataset.from_list(rows, features=FEATURES)
    rewrite_shard(root, 0, broken)
    batches = list(_ready(Prepared(path=str(root), bad_input="skip", **COMMON)).train_dataloader())
    assert sum(b["n_skipped"] for b in batches) == 1 and [len(b["index"]) for b in batches] == [4] * 3  # a stand-in
    seen = [i for b in batches for i in b["index"].tolist()]
    assert 1 not in seen and len(set(seen)) == 11  # row 1's place went to another row
    assert [s for b in batches for s in b["skipped"]][0].startswith(f"row 1: unreadable image: {root} row 1 ({rows[1]['id']})")
    with pytest.raises(DataError, match="unreadable image"):
        list(_ready(Prepared(path=str(root), bad_input="error", **COMMON)).train_dataloader())


def test_tokens_for_another_context_than_the_attached_models_are_refused(prepared12):
    from mulclip_pl.module import MulCLIP
    from tests.conftest import TEST_MODEL

    dm = Prepared(path=str(prepared12), **COMMON)
    dm.trainer = SimpleNamespace(lightning_module=MulCLIP(model_name=TEST_MODEL, context_length=77))
    with pytest.raises(DataError, match="context_length: expected 77, found 248.*--data.context_length 77"):
        dm.setup("fit")


def test_truncated_webdataset_shard_is_refused(synth12, tmp_path):
    path, columns = _write_user_data(synth12, tmp_path, "webdataset")
    data = (path / "b.tar").read_bytes()
    (path / "b.tar").write_bytes(data[:3000])
    with pytest.raises(DataError, match=r"b.tar: truncated or damaged .*, the file has 3000 bytes"):
        _ready(HFCaptions(path=str(path), format="webdataset", columns=columns, **COMMON))


def test_evaluation_comes_from_eval_data(synth12, prepared12, capsys):
    dm = Prepared(path=str(prepared12), eval_data=GenericCaptions(val_file=str(synth12 / "val.jsonl")), **COMMON)
    _ready(dm)
    assert dm.available_splits() == ("train", "val")
    (val,) = dm.eval_sets("val")
    assert val.kind == "retrieval" and len(val.dataset) == 4
    assert next(iter(dm.val_dataloader()[0]))["captions"].shape == (4, 248)
    with pytest.raises(SystemExit):
        main(["fit", "--data", "Prepared", "--data.path", str(prepared12), "--data.streaming", "true",
              "--data.eval_data", "GenericCaptions", "--data.eval_data.val_file", "v.jsonl", "--print_config"])
    printed = capsys.readouterr().out
    assert "class_path: mulclip_pl.data.Prepared" in printed and "val_file: v.jsonl" in printed
