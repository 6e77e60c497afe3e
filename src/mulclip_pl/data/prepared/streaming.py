"""Streaming training data: contiguous reads, split by rank and by loader worker, resumable mid-epoch.

For data read from slow or remote storage, random row access is what hurts: here rows are read in
runs of ``block`` contiguous rows (``shuffle_buffer // 8``), eight runs at a time, shuffled within
that buffer. Each epoch the runs are shuffled (a function of seed and epoch) and dealt to the
``world_size x workers`` slots, every slot the same number, so every rank runs the same number of
steps (DDP would hang otherwise) and the slots' rows are disjoint. The few runs left over (fewer
than one per slot) sit out that epoch, a different few each epoch; their count is logged.

Hugging Face's ``split_dataset_by_node`` assigns whole files to ranks (unequal row counts) and keeps
its resume state inside the workers; here a slot's order is a pure function of (seed, epoch,
slot), so a resume recomputes it and skips what the checkpoint says was consumed, without reading.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import numpy as np
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from mulclip_pl.data.prepared.hf_rows import RowPairs
from mulclip_pl.data.sampling import Progress
from mulclip_pl.errors import DataError

log = logging.getLogger(__name__)
BUFFER_BLOCKS = 8


class BlockRows(Protocol):
    """Rows that can be read in contiguous runs (a memory-mapped table, parquet files, tar shards)."""

    def __len__(self) -> int: ...
    def read(self, start: int, stop: int) -> list: ...  # items for rows start..stop-1


class StreamingPairs(IterableDataset):
    """Training pairs from ``rows``, this rank's and this worker's share of an epoch, in buffer order."""

    def __init__(self, rows: BlockRows, pairs: RowPairs, batch_size: int, seed: int = 0, rank: int = 0,
                 world_size: int = 1, workers: int = 0, shuffle_buffer: int = 2048) -> None:
        self.rows, self.pairs, self.batch_size, self.seed = rows, pairs, batch_size, seed
        self.rank, self.world_size, self.workers = rank, world_size, max(1, workers)
        slots = self.world_size * self.workers
        self.block = max(1, min(shuffle_buffer // BUFFER_BLOCKS, len(rows) // slots))
        self.blocks_per_slot = len(rows) // self.block // slots
        self.batches_per_worker = self.blocks_per_slot * self.block // batch_size
        if self.batches_per_worker == 0:
            raise DataError(f"streaming: {len(rows)} rows give {world_size} ranks x {self.workers} workers fewer than "
                             f"one batch of {batch_size} each; use fewer workers or a smaller batch")
        self.epoch, self.skip_batches = 0, 0  # set by StreamingLoader before each epoch's iterator
        used = slots * self.batches_per_worker * batch_size
        if rank == 0 and used < len(rows):
            log.info("streaming: each epoch uses %d of %d rows (equal shares for %d ranks x %d workers, whole "
                     "batches); the %d left out change every epoch", used, len(rows), world_size, self.workers,
                     len(rows) - used)

    def __len__(self) -> int:
        return self.workers * self.batches_per_worker * self.batch_size

    def slot_order(self, epoch: int, slot: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """Global row indices in emission order, and the (start, stop) runs they are read from."""
        rng = np.random.default_rng([self.seed, epoch])
        starts = rng.permutation(len(self.rows) // self.block)[slot * self.blocks_per_slot:][: self.blocks_per_slot]
        runs = [(int(s) * self.block, (int(s) + 1) * self.block) for s in starts]
        order = []
        for first in range(0, len(runs), BUFFER_BLOCKS):
            buffer = np.concatenate([np.arange(a, b) for a, b in runs[first:first + BUFFER_BLOCKS]])
            order.append(np.random.default_rng([self.seed, epoch, slot, first]).permutation(buffer))
        return np.concatenate(order), runs

    def __iter__(self):
        info = get_worker_info()
        if info is not None and info.num_workers != self.workers:
            raise RuntimeError(f"StreamingPairs was built for {self.workers} workers, the loader has {info.num_workers}")
        # The loader asks its workers in turn starting from worker 0; after a resume the next batch is
        # worker (skip_batches % workers)'s, so loader worker j plays that part from here on.
        worker = ((info.id if info is not None else 0) + self.skip_batches) % self.workers
        order, runs = self.slot_order(self.epoch, self.rank * self.workers + worker)
        order = order[: self.batches_per_worker * self.batch_size]
        done = _batches_of_worker(self.skip_batches, worker, self.workers) * self.batch_size
        buffer_rows = BUFFER_BLOCKS * self.block
        for first in range(done // buffer_rows * buffer_rows, len(order), buffer_rows):
            buffer_runs = runs[first // self.block:][:BUFFER_BLOCKS]
            items = {}
            for start, stop in buffer_runs:
                items.update(zip(range(start, stop), self.rows.read(start, stop)))
            pool = sorted(items)  # a bad row's stand-in comes from the rows in memory: this slot's share
            for position in range(max(first, done), min(first + buffer_rows, len(order))):
                if position % self.batch_size == 0:  # batches are whole: `done` and every batch start here
                    taken = set(order[position:position + self.batch_size].tolist())
                sample = self._sample(items, pool, int(order[position]), taken)
                taken.add(sample["index"])
                yield sample

    def _sample(self, items: dict, pool: list[int], index: int, batch: set[int]):
        """Row ``index``, or a stand-in from ``pool`` that is not in its batch (``batch``: rows and stand-ins)."""
        def build(row: int):
            return self.pairs.sample(self.epoch, row, fetch=lambda: _raise_if_error(items[row]))

        return self.pairs.or_replacement(build(index), self.epoch, index, pool, build, batch)


def _raise_if_error(item):
    if isinstance(item, Exception):
        raise item
    return item


def _batches_of_worker(batches_done: int, worker: int, workers: int) -> int:
    """How many of the first ``batches_done`` batches came from ``worker`` (loaders take them in turn)."""
    return max(0, (batches_done - worker + workers - 1) // workers)


class StreamingLoader(DataLoader):
    """DataLoader over ``StreamingPairs`` whose position survives checkpoints (like ``ResumableLoader``)."""

    def __init__(self, dataset: StreamingPairs, progress: Progress, num_workers: int = 0, **kwargs) -> None:
        # persistent_workers=False: workers restart each epoch, so they see the new epoch and skip
        super().__init__(dataset, batch_size=dataset.batch_size, drop_last=True, num_workers=num_workers,
                         persistent_workers=False, **kwargs)
        self.progress: Callable[[], tuple[int, int]] = progress
        self._resume: tuple[int, int] | None = None

    def __len__(self) -> int:
        return self.dataset.workers * self.dataset.batches_per_worker

    def __iter__(self):
        epoch, skip = self._resume if self._resume is not None else (self.progress()[0], 0)
        self._resume = None
        self.dataset.epoch, self.dataset.skip_batches = epoch, skip
        return super().__iter__()

    def state_dict(self) -> dict[str, int]:
        epoch, batches_done = self.progress()
        return {"epoch": epoch, "batches_done": batches_done, **self._layout()}

    def _layout(self) -> dict[str, int]:
        """What the deal of rows to slots depends on: a resume must use the same."""
        data = self.dataset
        return {"world_size": data.world_size, "workers": data.workers, "batch_size": data.batch_size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        saved = {key: state.get(key, value) for key, value in self._layout().items()}  # older checkpoints: same
        if saved != self._layout():
            raise DataError(f"resuming a streaming run trained with {saved} under {self._layout()}: streaming deals "
                            "contiguous runs of rows to processes x workers, so the rest of the epoch cannot be "
                            "re-dealt; resume with the same trainer.devices / num_nodes, data.num_workers and "
                            "data.batch_size (or use map-style loading, data.streaming false, which can)")
        finished = state["batches_done"] >= len(self)
        self._resume = (state["epoch"] + 1, 0) if finished else (state["epoch"], state["batches_done"])


class ItemRuns:
    """``BlockRows`` over a source with ``rows(start, stop)`` (hf_sources.py): rows become items; a
    bad row becomes its error, raised or skipped when its sample is built, as in map-style."""

    def __init__(self, source, to_item: Callable[[dict, str], object], name: str) -> None:
        self.source, self.to_item, self.name = source, to_item, name

    def __len__(self) -> int:
        return len(self.source)

    def read(self, start: int, stop: int) -> list:
        return [_item_or_error(self.to_item, row, f"{self.name} row {start + i}")
                for i, row in enumerate(self.source.rows(start, stop))]


def _item_or_error(to_item, row: dict, where: str):
    try:
        return to_item(row, where)
    except DataError as exc:
        return exc
