"""A trained (stretched) CLIP as plain open_clip holds it: one merged position table, a 0-dim temperature.

What ``mulclip_pl.load`` returns, what every export writes, and the open_clip config that goes with it.
"""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import torch
from torch import nn

from mulclip_pl.model.build import build_clip
from mulclip_pl.model.long_text import KEEP_POSITIONS, merged_positions


def open_clip_config(clip: nn.Module, model_name: str) -> dict:
    """The ``open_clip_config.json`` content for a (stretched) model, for ``local-dir:`` loading."""
    model_cfg = open_clip.get_model_config(model_name)
    model_cfg["text_cfg"]["context_length"] = int(clip.context_length)
    visual = clip.visual
    preprocess_cfg = {
        "size": list(visual.image_size) if isinstance(visual.image_size, tuple) else visual.image_size,
        "mean": list(getattr(visual, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN),
        "std": list(getattr(visual, "image_std", None) or open_clip.OPENAI_DATASET_STD),
    }
    return {"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg}


def export_open_clip_dir(clip: nn.Module, model_name: str, out_dir: str | Path) -> Path:
    """Write ``out_dir`` so that ``open_clip.create_model_and_transforms('local-dir:out_dir')`` loads it."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "open_clip_config.json").write_text(json.dumps(open_clip_config(clip, model_name), indent=2))
    save_file(plain_open_clip_state(clip), str(out / "open_clip_model.safetensors"))
    return out


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
