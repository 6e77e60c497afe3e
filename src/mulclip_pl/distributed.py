"""What every process holds, gathered to every process: for per-rank bookkeeping (random states,
bad-input lists) that is not a tensor. A collective under DDP: every rank must call it."""

from __future__ import annotations

from typing import Any

import torch.distributed as dist


def gather_from_ranks(value: Any, world_size: int) -> list[Any]:
    """``value`` of every rank, in rank order (``[value]`` on one process)."""
    if world_size > 1 and dist.is_available() and dist.is_initialized():
        gathered: list[Any] = [None] * world_size
        dist.all_gather_object(gathered, value)
        return gathered
    return [value]
