"""A trained (stretched) CLIP as plain open_clip holds it: one merged position table, a 0-dim temperature.

What ``mulclip_pl.load`` returns and what every export writes.
"""

from __future__ import annotations

import torch
from torch import nn

from mulclip_pl.model.build import build_clip
from mulclip_pl.model.long_text import KEEP_POSITIONS, merged_positions


def plain_clip(clip: nn.Module, model_name: str, source: str = "") -> nn.Module:
    """``clip`` rebuilt as plain open_clip's ``CLIP`` (one merged position table, 0-dim temperature),
    in eval mode: what ``mulclip_pl.load`` returns and the ONNX export traces."""
    return build_clip(model_name, context_length=int(clip.context_length),
                      keep_positions=getattr(clip, "keep_positions", KEEP_POSITIONS),
                      state=plain_open_clip_state(clip), source=source, position_scheme="single").float().eval()


def plain_open_clip_state(clip: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict plain open_clip loads: Long-CLIP's two position tables merged into one
    ``positional_embedding`` (frozen rows < keep, trainable rows after), and open_clip's default
    0-dim ``logit_scale`` (training holds it as 1 element), on the CPU."""
    state = merged_positions(clip.state_dict(), getattr(clip, "keep_positions", KEEP_POSITIONS))
    state = {**state, "logit_scale": state["logit_scale"].reshape(())}
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}
