"""A training loader that resumes mid-epoch exactly, on one process or many.

Lightning saves and restores a train loader's position only if the loader has ``state_dict`` /
``load_state_dict``, and it builds the resumed epoch's iterator *before* it calls ``set_epoch``.
So the order here is a pure function of (seed, epoch), sharded by rank like ``DistributedSampler``
(a subclass, so Lightning does not wrap it), and the saved state carries the epoch as well as
the batches already processed. Keys are ``(epoch, index)`` pairs, so a dataset can seed its
per-sample randomness (which subcaptions to keep) from them instead of from worker RNG streams.
"""

from __future__ import annotations

from typing import Callable

from torch.utils.data import DataLoader, Dataset, DistributedSampler

Progress = Callable[[], tuple[int, int]]  # -> (current epoch, batches processed in it)


class ResumableShuffle(DistributedSampler):
    """Seeded per-epoch shuffle, sharded by rank, that can start an epoch after ``skip`` samples."""

    def __init__(self, size: int, num_replicas: int = 1, rank: int = 0, seed: int = 0) -> None:
        super().__init__(range(size), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.skip = 0

    def __iter__(self):
        keys = [(self.epoch, index) for index in super().__iter__()]
        skip, self.skip = self.skip, 0  # only the first epoch after a resume starts part-way
        return iter(keys[skip:])


class ResumableLoader(DataLoader):
    """DataLoader over a ``ResumableShuffle`` whose position survives checkpoints."""

    def __init__(self, dataset: Dataset, batch_size: int, progress: Progress, seed: int = 0, num_replicas: int = 1,
                 rank: int = 0, **kwargs) -> None:
        sampler = ResumableShuffle(len(dataset), num_replicas, rank, seed)
        super().__init__(dataset, batch_size=batch_size, sampler=sampler, drop_last=True, **kwargs)
        self.progress = progress

    def state_dict(self) -> dict[str, int]:
        epoch, batches_done = self.progress()
        return {"epoch": epoch, "batches_done": batches_done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        finished = state["batches_done"] >= len(self)
        self.sampler.set_epoch(state["epoch"] + int(finished))
        self.sampler.skip = 0 if finished else state["batches_done"] * self.batch_size
