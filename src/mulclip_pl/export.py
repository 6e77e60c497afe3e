"""``mulclip-pl export``: a trained model's CLIP towers as plain open_clip weights."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch

from mulclip_pl.model.checkpoints import export_open_clip_dir
from mulclip_pl.trained import load_trained

ExportFormat = Literal["dir", "safetensors", "pt"]
SUFFIXES = {".safetensors": "safetensors", ".pt": "pt"}


class ExportError(ValueError):
    """``--out`` and ``--format`` disagree."""


def export(*, ckpt: str, out: str, format: ExportFormat | None = None, trust_pickle: bool = False) -> Path:
    """Write the CLIP towers (stretched positions, no training heads) as plain open_clip weights.

    Args:
        ckpt: a Lightning checkpoint written by ``mulclip-pl fit``.
        out: the folder or file to write.
        format: 'dir': a folder (loads with ``open_clip.create_model_and_transforms('local-dir:OUT')``);
            'safetensors' (holds tensors only: cannot run code when loaded) or 'pt': one file (loads
            with ``pretrained=OUT, force_context_length=248``, or ``--model.pretrained OUT``).
            Default: from OUT's suffix (.safetensors, .pt, otherwise a folder).
        trust_pickle: read a ``ckpt`` that needs full unpickling, which can run code hidden in it:
            only for files you trust (e.g. to convert it once with ``--format safetensors``).
    """
    target, kind = _target(Path(out), format)
    module = load_trained(ckpt, trust_pickle=trust_pickle)
    clip, name = module.backbone.clip, module.hparams.model_name
    if kind == "dir":
        export_open_clip_dir(clip, name, target)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in clip.state_dict().items()}
        if kind == "pt":
            torch.save(state, target)
        else:
            from safetensors.torch import save_file

            save_file(state, str(target))
    print(f"exported {name} ({clip.context_length} text positions) to {target}")
    return target


def _target(out: Path, format: ExportFormat | None) -> tuple[Path, ExportFormat]:
    """Where to write and in which format; a file format adds its suffix when OUT has none."""
    implied = SUFFIXES.get(out.suffix, "dir")
    if format is None or format == implied:
        return out, implied
    if implied == "dir":
        return out.with_name(f"{out.name}.{format}"), format
    raise ExportError(f"--out {out} names a .{implied} file but --format is {format}; change one of them")
