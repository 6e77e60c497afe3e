"""``mulclip-pl export --format open_clip``: a folder ``open_clip.create_model_and_transforms('local-dir:OUT')``
loads, and the ``open_clip_config.json`` it holds (also what the other formats take their preprocessing from)."""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
from torch import nn

from mulclip_pl.model.plain import plain_open_clip_state


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
