"""Running a test function on several CPU processes joined in one gloo group: spawned, never forked.

A forked child inherits a copy of the parent's memory but not its threads: once torch's intra-op
thread pool (or OpenMP's) has run in the parent, as it has after any earlier test, the child can
wait forever on a lock held by a thread it does not have. ``tests/test_predict_ddp.py`` hung that
way 3 times out of 3 under ``OMP_NUM_THREADS=1``. A spawned child starts a fresh interpreter and
imports the test module (a few seconds), so the function must be a module-level one.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Callable

import torch.distributed as dist
import torch.multiprocessing as mp


def run_on_ranks(fn: Callable[..., Any], folder: Path, *args: Any, world_size: int = 2) -> list[Any]:
    """``fn(rank, *args)`` on ``world_size`` spawned processes in one gloo group; what each returned, in rank order.

    ``folder``: an empty folder for the group's rendezvous file and the returned values (pickled).
    """
    folder.mkdir(parents=True, exist_ok=True)
    mp.start_processes(_rank_entry, args=(fn, str(folder), world_size, args), nprocs=world_size, join=True,
                       start_method="spawn")
    return [pickle.loads((folder / f"rank{rank}.pkl").read_bytes()) for rank in range(world_size)]


def _rank_entry(rank: int, fn: Callable[..., Any], folder: str, world_size: int, args: tuple) -> None:
    # A spawned child inherits "spawn" as its default start method; a rank that torchrun or Lightning
    # starts has the platform's own, so its loader workers fork, as here (torch's DataLoader workers
    # are made to be forked; spawned ones would each import the test module again: test_prepared_ddp's
    # 2 ranks x 2 workers took 133 s instead of 41 s on 2 busy cores).
    mp.set_start_method(mp.get_all_start_methods()[0], force=True)
    dist.init_process_group("gloo", init_method=f"file://{folder}/init", rank=rank, world_size=world_size)
    try:
        result = fn(rank, *args)
    finally:
        dist.destroy_process_group()
    (Path(folder) / f"rank{rank}.pkl").write_bytes(pickle.dumps(result))
