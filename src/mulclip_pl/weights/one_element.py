"""Scalars held as 1-element tensors (CLIP's temperature, the calibration gains), read from files of
either shape.

FSDP shards no 0-dim parameter, so training holds them as shape (1,) (open_clip's own
``nonscalar_logit_scale``); checkpoints written before hold 0-dim tensors, and plain open_clip files
hold a 0-dim ``logit_scale``. These hooks make every such file load and resume.
"""

from __future__ import annotations

import torch
from torch import nn


def match_one_element_shapes(module: nn.Module, state: dict, prefix: str, *args) -> None:
    """Load-state-dict pre-hook: a 1-element entry (a temperature, a gain) takes the module's own
    shape, so checkpoints written with 0-dim scalars (before FSDP support) and with 1-element ones
    both load."""
    own = {prefix + name: tensor for name, tensor in [*module.named_parameters(), *module.named_buffers()]}
    for key, value in list(state.items()):
        mine = own.get(key)
        if mine is not None and mine.numel() == 1 and torch.is_tensor(value) and value.numel() == 1:
            state[key] = value.reshape(mine.shape)


def one_element_optimizer_moments(checkpoint: dict) -> None:
    """A run checkpointed with 0-dim scalars resumes with 1-element ones: their AdamW moments are
    reshaped alike (no parameter is 0-dim any more; the 0-dim ``step`` counters stay)."""
    for optimizer in checkpoint.get("optimizer_states", []):
        for moments in optimizer.get("state", {}).values():
            for name in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
                if torch.is_tensor(moments.get(name)) and moments[name].ndim == 0:
                    moments[name] = moments[name].reshape(1)
