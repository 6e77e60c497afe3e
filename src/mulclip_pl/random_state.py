"""The global random streams (torch, Python, NumPy) as checkpoint-safe values, and back.

Resuming a run must continue these streams where they stopped: anything that draws from them
after a resume (dropout, a user's callback, a sampler without its own seed) would otherwise
repeat or diverge. Values are tensors and plain tuples, so ``torch.load(weights_only=True)``
reads them.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def capture() -> dict[str, Any]:
    name, keys, position, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": (name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached)}


def restore(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    name, keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached))
