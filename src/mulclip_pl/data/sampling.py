"""A training loader that resumes mid-epoch exactly, on one process or many.

Lightning saves and restores a train loader's position only if the loader has ``state_dict`` /
``load_state_dict``, and it builds the resumed epoch's iterator *before* it calls ``set_epoch``.
So the order here is a pure function of (seed, epoch): one global permutation, dealt to the ranks
in turn like ``DistributedSampler`` (a subclass, so Lightning does not wrap it). The consumed part
of an epoch is then a prefix of that permutation whatever the layout, and the saved position is
that prefix's length in samples: a run resumed with another number of processes re-deals the rest
of the epoch among them (same global batch: the step count and the schedule stay as they were).
Keys are ``(epoch, index)`` pairs, so a dataset can seed its per-sample randomness (which
subcaptions to keep) from them instead of from worker RNG streams.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from mulclip_pl.errors import DataError

Progress = Callable[[], tuple[int, int]]  # -> (current epoch, batches processed in it)


class ResumableShuffle(DistributedSampler):
    """Seeded per-epoch shuffle, dealt to ranks, that can start an epoch after ``skip`` samples
    of the global order (all ranks' samples together)."""

    def __init__(self, size: int, num_replicas: int = 1, rank: int = 0, seed: int = 0) -> None:
        super().__init__(range(size), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.skip = 0

    def __iter__(self):
        # DistributedSampler's own order (same generator, same truncation), written out so that a
        # resume can drop a prefix of the *global* order and deal the rest.
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.dataset), generator=generator).tolist()[self.skip:self.total_size]
        self.skip = 0  # only the first epoch after a resume starts part-way
        share = len(order) // self.num_replicas
        return iter([(self.epoch, index) for index in order[self.rank:share * self.num_replicas:self.num_replicas]])


class ResumableLoader(DataLoader):
    """DataLoader over a ``ResumableShuffle`` whose position survives checkpoints."""

    def __init__(self, dataset: Dataset, batch_size: int, progress: Progress, seed: int = 0, num_replicas: int = 1,
                 rank: int = 0, **kwargs) -> None:
        sampler = ResumableShuffle(len(dataset), num_replicas, rank, seed)
        super().__init__(dataset, batch_size=batch_size, sampler=sampler, drop_last=True, **kwargs)
        self.progress = progress

    def state_dict(self) -> dict[str, int]:
        epoch, batches_done = self.progress()
        world_size = self.sampler.num_replicas
        return {"epoch": epoch, "batches_done": batches_done, "batch_size": self.batch_size,
                "world_size": world_size, "samples_done": batches_done * self.batch_size * world_size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        world_size = self.sampler.num_replicas
        saved_world = state.get("world_size", world_size)  # checkpoints before 0.2 hold neither: same layout
        saved_batch = state.get("batch_size", self.batch_size)
        if saved_world * saved_batch != world_size * self.batch_size:
            raise DataError(
                f"resuming a run trained as {saved_world} process(es) x {saved_batch} samples (global batch "
                f"{saved_world * saved_batch}) as {world_size} x {self.batch_size}: the schedule counts steps of the "
                f"global batch; set --data.batch_size {saved_world * saved_batch // world_size} for {world_size} "
                f"process(es) if it divides, or start a new run from these weights with --model.init_from")
        samples_done = state.get("samples_done", state["batches_done"] * saved_batch * saved_world)
        finished = state["batches_done"] >= len(self)
        self.sampler.set_epoch(state["epoch"] + int(finished))
        self.sampler.skip = 0 if finished else samples_done
