"""``--model.init_from``: a new run's first weights from a ``mulclip-pl fit`` checkpoint (weights only).

The CLIP towers always come from it (77 positions are stretched by ``build_clip``); the calibration heads
only where the checkpoint has them with the same shapes, since a run may add a head its start lacked.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

log = logging.getLogger(__name__)
TOWERS = "backbone.clip."  # the open_clip model's prefix in a MulCLIP state dict


def towers_state(state: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor] | None:
    """The open_clip model's entries of a MulCLIP ``state``, with the prefix removed (None for None)."""
    if state is None:
        return None
    return {k[len(TOWERS):]: v for k, v in state.items() if k.startswith(TOWERS)}


def load_heads(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Calibration heads from ``state`` where it has them with the same shapes (logged)."""
    heads = {k: v for k, v in state.items() if k.startswith(("image_calibration.", "text_calibration."))}
    own = module.state_dict()
    usable = {k: v for k, v in heads.items() if k in own and (own[k].shape == v.shape or own[k].numel() == v.numel() == 1)}
    if usable:
        module.load_state_dict(usable, strict=False)
    log.info("init_from %s: CLIP towers and %d of %d calibration tensors loaded", source, len(usable), len(heads))
