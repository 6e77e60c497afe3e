"""``mulclip-pl export``: a trained model's CLIP towers as plain open_clip weights."""

from __future__ import annotations

from pathlib import Path

import torch

from mulclip_pl.model.checkpoints import export_open_clip_dir, plain_open_clip_state
from mulclip_pl.trained import load_trained


def export(*, ckpt: str, out: str) -> Path:
    """Write the CLIP towers (stretched positions, no training heads) as plain open_clip weights.

    Args:
        ckpt: a Lightning checkpoint written by ``mulclip-pl fit``.
        out: a folder (loads with ``open_clip.create_model_and_transforms('local-dir:OUT')``), or a
            ``.pt`` / ``.safetensors`` file (loads with ``pretrained=OUT, force_context_length=248``).
    """
    module = load_trained(ckpt)
    clip, name = module.backbone.clip, module.hparams.model_name
    target = Path(out)
    if target.suffix in (".pt", ".safetensors"):
        target.parent.mkdir(parents=True, exist_ok=True)
        state = plain_open_clip_state(clip)  # one merged position table, as open_clip expects
        if target.suffix == ".pt":
            torch.save(state, target)
        else:
            from safetensors.torch import save_file

            save_file(state, str(target))
    else:
        export_open_clip_dir(clip, name, target)
    print(f"exported {name} ({clip.context_length} text positions) to {target}")
    return target
