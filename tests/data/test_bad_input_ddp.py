"""Two processes (gloo), bad items on both ranks: every rank keeps its batch size and step count.

A bad item that simply left its batch made one rank's batch smaller, and the batch-level losses
then gathered unequal sizes (gloo aborts, NCCL can hang). Here each source (loose files, a user's
``datasets`` table, prepared shards; map-style and streaming) gets a corrupt image on rank 0, a
missing file or an empty caption on rank 1 and one of rank 1's batches entirely bad, for 2 epochs.
"""

import json
import shutil
from types import SimpleNamespace

import datasets
import pytest

from mulclip_pl.data import GenericCaptions, HFCaptions, Prepared
from mulclip_pl.data.prepared.store import FEATURES, MANIFEST
from mulclip_pl.data.sampling import ResumableShuffle
from tests.helpers.gloo import run_on_ranks
from tests.helpers.prepared import rewrite_shard

BATCH, EPOCHS, ROWS = 2, 2, 12
COMMON = dict(batch_size=BATCH, num_workers=0, image_size=32, max_sentences=2, bad_input="skip")


def _bad_rows() -> dict[str, int]:
    """Row indices to break, from epoch 0's deal: rank 0's first sample, rank 1's first, rank 1's 2nd batch."""
    rank0, rank1 = ([i for _, i in ResumableShuffle(ROWS, 2, rank)] for rank in (0, 1))
    return {"rank0": rank0[0], "rank1": rank1[0], "batch_a": rank1[BATCH], "batch_b": rank1[BATCH + 1]}


def _raw(synth12, root):
    shutil.copytree(synth12, root)
    rows = [json.loads(line) for line in (root / "train.jsonl").read_text().splitlines()]
    bad = _bad_rows()
    for key, index in bad.items():
        image = root / rows[index]["image"]
        image.unlink() if key == "rank1" else image.write_bytes(b"not an image")
    return {"source": "raw", "train_file": str(root / "train.jsonl"), "bad": sorted(rows[i]["id"] for i in bad.values())}


def _table(synth12, root):
    records = GenericCaptions(train_file=str(synth12 / "train.jsonl")).load("train", "train")
    bad = _bad_rows()
    images = [{"bytes": r.image.read_bytes(), "path": r.image.name} for r in records]
    captions = [r.caption for r in records]
    for key, index in bad.items():
        if key == "rank1":
            captions[index] = "  "
        else:
            images[index]["bytes"] = b"not an image"
    table = datasets.Dataset.from_dict(
        {"picture": images, "text": captions, "key": [r.id for r in records]},
        features=datasets.Features({"picture": datasets.Image(), "text": datasets.Value("string"),
                                    "key": datasets.Value("string")}))
    table.save_to_disk(str(root))
    return {"source": "table", "path": str(root), "bad": sorted(f"row {i}" for i in bad.values())}


def _prepared(prepared12, root):
    shutil.copytree(prepared12, root)
    manifest = json.loads((root / MANIFEST).read_text())
    bad, first = _bad_rows(), 0
    for k, shard in enumerate(manifest["shards"]):
        table = datasets.load_from_disk(str(root / shard["path"])).cast_column("image", datasets.Image(decode=False))
        rows = table.to_list()
        for i in range(len(rows)):
            if first + i in bad.values():
                rows[i]["image"]["bytes"] = b"not an image"
        first += len(rows)
        rewrite_shard(root, k, datasets.Dataset.from_list(rows, features=FEATURES))
    return {"source": "prepared", "path": str(root), "bad": sorted(f"row {i}" for i in bad.values())}


def _module(spec: dict, streaming: bool):
    if spec["source"] == "raw":
        return GenericCaptions(train_file=spec["train_file"], check_files=False, **COMMON)
    if spec["source"] == "table":
        return HFCaptions(path=spec["path"], columns={"image": "picture", "caption": "text", "id": "key"},
                          streaming=streaming, **COMMON)
    return Prepared(path=spec["path"], streaming=streaming, **COMMON)


def _rank_main(rank: int, specs: list) -> dict[str, list]:
    """Per source and mode, per epoch, per batch on this rank: (size, distinct items, bad items it stands for)."""
    seen = {}
    for spec in specs:
        for streaming in ([False, True] if spec["source"] != "raw" else [False]):
            dm = _module(spec, streaming)
            dm.trainer = SimpleNamespace(world_size=2, global_rank=rank, lightning_module=None)
            dm.setup("fit")
            epochs = []
            for epoch in range(EPOCHS):
                dm._train_progress = lambda epoch=epoch: (epoch, 0)
                loader = dm.train_dataloader()
                loader.sampler.set_epoch(epoch) if hasattr(loader, "sampler") and not streaming else None
                epochs.append([(len(b["index"]), len(set(b["index"].tolist())), [s.split(":")[0] for s in b["skipped"]])
                               for b in loader])
            seen[f"{spec['source']}-{'streaming' if streaming else 'map'}"] = epochs
    return seen


@pytest.fixture(scope="module")
def seen(synth12, prepared12, tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_ddp")
    specs = [_raw(synth12, root / "raw"), _table(synth12, root / "table"), _prepared(prepared12, root / "prepared")]
    ranks = run_on_ranks(_rank_main, root / "ranks", specs)
    return {name: ([rank[name] for rank in ranks], next(s["bad"] for s in specs if name.startswith(s["source"])))
            for name in ranks[0]}


@pytest.mark.parametrize("name", ["raw-map", "table-map", "table-streaming", "prepared-map", "prepared-streaming"])
def test_bad_items_keep_every_rank_in_step(seen, name):
    ranks, bad = seen[name]
    for epoch in range(EPOCHS):
        sizes = [[size for size, _, _ in rank[epoch]] for rank in ranks]
        assert sizes[0] == sizes[1] == [BATCH] * (ROWS // 2 // BATCH), (name, epoch)  # same steps, full batches
        assert all(distinct == size for rank in ranks for size, distinct, _ in rank[epoch]), (name, epoch)  # no twins
        skipped = [item for rank in ranks for _, _, items in rank[epoch] for item in items]
        assert sorted(skipped) == bad, (name, epoch)  # each bad item counted once an epoch, none lost


def test_bad_items_fall_on_both_ranks_and_fill_a_whole_batch(seen):
    ranks, bad = seen["raw-map"]
    per_batch = [[items for _, _, items in rank[0]] for rank in ranks]
    assert len(per_batch[0][0]) == 1 and len(per_batch[1][0]) == 1  # one bad item on each rank
    assert len(per_batch[1][1]) == 2  # rank 1's second batch was all bad, and still full
