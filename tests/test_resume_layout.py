"""Resuming under another layout: the data position is kept in samples and re-dealt, or refused;
each rank's random streams come back to that rank.
"""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DistributedSampler

from mulclip_pl.data.prepared.streaming import StreamingLoader, StreamingPairs
from mulclip_pl.data.sampling import ResumableLoader, ResumableShuffle
from mulclip_pl.errors import DataError
from mulclip_pl.module import MulCLIP
from tests.conftest import TEST_MODEL

N = 23  # not a multiple of the batch or the world size: truncation is part of what is checked


class _Indices(torch.utils.data.Dataset):
    def __len__(self):
        return N

    def __getitem__(self, key):
        return key[1]


def _loader(world: int, rank: int, batch: int, progress=(0, 0)) -> ResumableLoader:
    return ResumableLoader(_Indices(), batch, progress=lambda: progress, seed=5, num_replicas=world, rank=rank)


def _rest_of_epoch(world: int, batch: int, state: dict) -> list[list[int]]:
    ranks = []
    for rank in range(world):
        loader = _loader(world, rank, batch)
        loader.load_state_dict(state)
        ranks.append([i for b in loader for i in b.tolist()])
    return ranks


@pytest.mark.parametrize("world", [1, 2, 3])
def test_a_fresh_epoch_is_distributed_samplers_order(world):
    for rank in range(world):
        sampler, reference = ResumableShuffle(N, world, rank, seed=5), DistributedSampler(range(N), world, rank, seed=5,
                                                                                          drop_last=True)
        for epoch in (0, 3):
            sampler.set_epoch(epoch), reference.set_epoch(epoch)
            assert [i for _, i in sampler] == list(reference)


@pytest.mark.parametrize("old, new", [((2, 2), (1, 4)), ((1, 4), (2, 2)), ((2, 3), (3, 2)), ((2, 2), (2, 2))])
def test_resume_under_another_world_size_continues_the_epoch_exactly(old, new):
    (old_world, old_batch), (new_world, new_batch) = old, new
    state = _loader(old_world, 0, old_batch, progress=(0, 2)).state_dict()  # 2 steps of epoch 0 done
    assert state["samples_done"] == 2 * old_batch * old_world
    consumed = sorted(i for rank in range(old_world) for b in list(_loader(old_world, rank, old_batch))[:2]
                      for i in b.tolist())
    rest = _rest_of_epoch(new_world, new_batch, state)
    assert len({len(r) for r in rest}) == 1  # every rank the same number of samples (lockstep)
    flat = sorted(i for r in rest for i in r)
    assert not set(flat) & set(consumed) and len(set(flat)) == len(flat)  # nothing repeated
    assert len(consumed) + len(flat) > N - new_world * new_batch  # nothing skipped beyond one last partial batch


def test_resume_with_another_global_batch_is_refused_with_the_fix():
    state = _loader(2, 0, 2, progress=(0, 1)).state_dict()
    with pytest.raises(DataError, match=r"trained as 2 process\(es\) x 2 .*global batch 4.* as 1 x 2.*"
                                        r"--data.batch_size 4 for 1 process"):
        _loader(1, 0, 2).load_state_dict(state)


def test_checkpoints_from_before_keep_their_meaning():
    old_state = {"epoch": 0, "batches_done": 2}  # no layout: written by the same layout
    assert _rest_of_epoch(2, 2, old_state) == [r[4:] for r in _rest_of_epoch(2, 2, {"epoch": 0, "batches_done": 0})]


class _Rows:
    def __len__(self):
        return 64

    def read(self, start, stop):
        return list(range(start, stop))


def test_streaming_resume_under_another_layout_is_refused():
    def loader(world, workers):
        data = StreamingPairs(_Rows(), pairs=None, batch_size=4, world_size=world, workers=workers)
        return StreamingLoader(data, progress=lambda: (0, 1))

    state = loader(2, 1).state_dict()
    loader(2, 1).load_state_dict(state)  # same layout: fine
    for world, workers in ((1, 1), (2, 2)):
        with pytest.raises(DataError, match="resuming a streaming run trained with .* under .*same trainer.devices"):
            loader(world, workers).load_state_dict(state)


def _draw() -> list:
    return [*torch.rand(2).tolist(), float(np.random.rand())]


def _rank_main(rank: int, init_file: str, path: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    module = MulCLIP(model_name=TEST_MODEL, preset="global_only")
    module._trainer = SimpleNamespace(world_size=2, global_rank=rank)
    torch.manual_seed(100 + rank), np.random.seed(rank)  # Lightning seeds ranks apart too
    checkpoint = {}
    module.on_save_checkpoint(checkpoint)
    if rank == 0:
        torch.save(checkpoint, path)  # only rank 0 writes, as Lightning does
    expected = _draw()
    dist.barrier()
    _draw()
    module.on_load_checkpoint(torch.load(path, weights_only=True))
    gathered = [None, None]
    dist.all_gather_object(gathered, (expected, _draw()))
    if rank == 0:
        torch.save(gathered, out)
    dist.destroy_process_group()


def test_each_rank_gets_its_own_random_streams_back(tmp_path):
    out = tmp_path / "draws.pt"
    # spawn: a forked child of a process that has run torch's thread pool (earlier tests) can deadlock
    mp.start_processes(_rank_main, args=(str(tmp_path / "init"), str(tmp_path / "c.pt"), str(out)), nprocs=2,
                       join=True, start_method="spawn")
    (expected0, got0), (expected1, got1) = torch.load(out)
    assert got0 == expected0 and got1 == expected1
    assert expected0 != expected1  # the ranks' streams differ: restoring rank 0's everywhere would fail
