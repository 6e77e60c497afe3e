"""AdamW parameter groups and the warm-up + cosine learning-rate schedule used for fine-tuning.

CLIP's recipe: no weight decay on biases, norms, embeddings and the logit scale; the new
calibration heads get their own (larger) learning rate, since they start from scratch while the
towers start from pretrained weights.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

HEAD_PREFIXES = ("image_calibration", "text_calibration")


def param_groups(module: nn.Module, lr: float, head_lr: float, weight_decay: float) -> list[dict]:
    decay, no_decay, heads = [], [], []
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        if name.startswith(HEAD_PREFIXES):
            heads.append(param)
        elif param.ndim < 2 or "embedding" in name or "logit_scale" in name or name.endswith(".bias"):
            no_decay.append(param)
        else:
            decay.append(param)
    groups = [{"params": decay, "lr": lr, "weight_decay": weight_decay},
              {"params": no_decay, "lr": lr, "weight_decay": 0.0}]
    if heads:
        groups.append({"params": heads, "lr": head_lr, "weight_decay": weight_decay})
    return groups


def warmup_cosine(warmup: int, total_steps: Callable[[], int]) -> Callable[[int], float]:
    """Linear warm-up then cosine decay to 0; ``total_steps`` is only called once past step 0."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if step == 0:
            return 1.0
        progress = (step - warmup) / max(1, total_steps() - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor
