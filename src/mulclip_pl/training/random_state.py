"""The global random streams (torch CPU and CUDA, Python, NumPy) as checkpoint-safe values, and back.

Resuming a run must continue these streams where they stopped: anything that draws from them
after a resume (dropout, a user's callback, a sampler without its own seed) would otherwise
repeat or diverge. Every rank has its own streams (Lightning seeds them apart), so a checkpoint
keeps one set per rank. Values are tensors and plain tuples, so ``torch.load(weights_only=True)``
reads them.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np
import torch

from mulclip_pl.distributed import gather_from_ranks

log = logging.getLogger(__name__)


def capture() -> dict[str, Any]:
    name, keys, position, has_gauss, cached = np.random.get_state()
    states = {"torch": torch.get_rng_state(), "python": random.getstate(),
              "numpy": (name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached)}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state()  # this rank's device
    return states


def restore(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    name, keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"])


def capture_ranks(world_size: int) -> list[dict[str, Any]]:
    """Every rank's streams, in rank order (a collective under DDP: call it on every rank)."""
    return gather_from_ranks(capture(), world_size)


def restore_rank(saved: dict[str, Any] | list[dict[str, Any]], rank: int, world_size: int) -> None:
    """This rank's streams from ``capture_ranks``' list (or an older checkpoint's single set)."""
    if isinstance(saved, dict):  # written before 0.2: rank 0's streams only
        restore(saved)
    elif len(saved) == world_size:
        restore(saved[rank])
    elif rank == 0:
        log.warning("the checkpoint holds random streams for %d process(es), this run has %d: the streams start "
                    "afresh (data order and per-sample choices still resume exactly)", len(saved), world_size)
