"""The training order across ranks and epochs: every rank its own shard, no sample twice, nothing left out.

Checked without spawning processes: the loader a datamodule builds for rank 0 and for rank 1 of 2
(a stand-in trainer says which), and the sampler itself for 3 ranks.
"""

import json
from types import SimpleNamespace

import pytest

from mulclip_pl.data import GenericCaptions
from mulclip_pl.data.sampling import ResumableShuffle
from tests.conftest import write_image

N = 8


@pytest.fixture(scope="module")
def caption_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    rows = [{"image": f"{i}.png", "caption": f"Thing {i}. It is here.", "id": str(i)} for i in range(N)]
    for i in range(N):
        write_image(root / f"{i}.png", (20 * i, 0, 0))
    (root / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return root / "train.jsonl"


def _rank_loader(caption_file, rank, world=2):
    data = GenericCaptions(train_file=str(caption_file), batch_size=2, num_workers=0, image_size=32, seed=3)
    data.trainer = SimpleNamespace(world_size=world, global_rank=rank, lightning_module=None)
    data.setup("fit")
    return data.train_dataloader()


def _epoch(loader, epoch):
    loader.sampler.set_epoch(epoch)
    return [i for batch in loader for i in batch["index"].tolist()]


def test_two_ranks_train_on_disjoint_shards_that_cover_the_data(caption_file):
    loaders = [_rank_loader(caption_file, rank) for rank in (0, 1)]
    orders = {}
    for epoch in (0, 1):
        shards = [_epoch(loader, epoch) for loader in loaders]
        assert len(shards[0]) == len(shards[1]) == N // 2  # ranks step in lockstep
        assert set(shards[0]).isdisjoint(shards[1]) and sorted(shards[0] + shards[1]) == list(range(N))
        orders[epoch] = shards
    assert orders[0] != orders[1]  # reshuffled each epoch


def test_a_resumed_rank_continues_its_own_shard(caption_file):
    loader = _rank_loader(caption_file, rank=1)
    full = _epoch(loader, 0)
    resumed = _rank_loader(caption_file, rank=1)
    resumed.load_state_dict({"epoch": 0, "batches_done": 1})
    assert [i for batch in resumed for i in batch["index"].tolist()] == full[2:]


def test_three_ranks_partition_each_epoch():
    for epoch in range(3):
        shards = []
        for rank in range(3):
            sampler = ResumableShuffle(9, num_replicas=3, rank=rank, seed=0)
            sampler.set_epoch(epoch)
            keys = list(sampler)
            assert {e for e, _ in keys} == {epoch}  # keys carry the epoch for per-sample seeding
            shards.append([i for _, i in keys])
        assert sorted(sum(shards, [])) == list(range(9))
