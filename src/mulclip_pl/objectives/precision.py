"""Every similarity that is divided by a temperature is computed in fp32, also under autocast.

At a temperature of 0.07 (or a logit scale of 100) bf16's 8-bit mantissa turns into errors of
several percent in softmax weights (measured: SAP aggregation weights off by up to 0.10). A
``.float()`` cast alone is not enough: autocast casts matmul inputs back to bf16. So the
objectives compute their scores inside ``fp32(x)``, with autocast switched off on x's device.
"""

from __future__ import annotations

import contextlib

import torch


def fp32(x: torch.Tensor):
    """A context with autocast off on ``x``'s device (a no-op where autocast does not exist)."""
    if torch.amp.is_autocast_available(x.device.type):
        return torch.autocast(x.device.type, enabled=False)
    return contextlib.nullcontext()
