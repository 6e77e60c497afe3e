"""``mulclip-pl export``: a trained model's CLIP towers as plain open_clip weights (``open_clip_dir.py``), as a
Hugging Face transformers CLIP folder (``--format hf``, see ``hf.py``), as ONNX graphs (``--format onnx``, see
``onnx.py``) or as a Long-CLIP weights file (``--format longclip``, see ``longclip.py``), with a model card."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch

from mulclip_pl.errors import ExportError
from mulclip_pl.export.hf import export_hf_dir
from mulclip_pl.export.longclip import write_longclip
from mulclip_pl.export.model_card import write_model_card
from mulclip_pl.export.onnx import export_onnx_dir
from mulclip_pl.export.open_clip_dir import export_open_clip_dir, open_clip_config
from mulclip_pl.model.plain import plain_open_clip_state
from mulclip_pl.module import MulCLIP

Format = Literal["open_clip", "pt", "safetensors", "hf", "longclip", "onnx"]
FILE_FORMATS = {".pt": "pt", ".safetensors": "safetensors"}
FOLDER_FORMATS = ("open_clip", "hf", "onnx")


def export(*, ckpt: str, out: str, format: Format | None = None, trust_pickle: bool = False,
           results: str | None = None) -> Path:
    """Write the CLIP towers (stretched positions, no training heads) for use outside mulclip-pl.

    Args:
        ckpt: a Lightning checkpoint written by ``mulclip-pl fit``.
        out: where to write: a folder for ``open_clip``, ``hf`` and ``onnx``, a file for ``pt``,
            ``safetensors`` and ``longclip``.
        format: ``open_clip`` (a folder: ``open_clip.create_model_and_transforms('local-dir:OUT')``,
            also clip_benchmark's ``--model local-dir:OUT``); ``safetensors`` (tensors only: cannot
            run code when loaded) or ``pt`` (a file: ``pretrained=OUT, force_context_length=248``,
            or ``--model.pretrained OUT``); ``hf`` (a folder for transformers' ``CLIPModel`` /
            ``CLIPTokenizer`` / ``CLIPImageProcessor.from_pretrained``, needs
            ``pip install 'mulclip-pl[hf]'``); ``longclip`` (a ``.pt`` file for Long-CLIP's
            ``longclip.load``, see ``longclip.py``); ``onnx`` (a folder: ``image_encoder.onnx``,
            ``text_encoder.onnx`` taking (N, 248) int64 ids, ``tokenizer.md``; both give the
            unnormalised embeddings, see ``onnx.py``; needs ``pip install 'mulclip-pl[onnx]'``).
            Default: from the suffix of ``out`` (``.pt``, ``.safetensors``, else ``open_clip``); a
            file format adds its suffix when OUT has none.
        trust_pickle: read a ``ckpt`` that needs full unpickling, which can run code hidden in it:
            only for files you trust (e.g. to convert it once with ``--format safetensors``).
        results: a ``results.md`` / ``results.json`` of ``mulclip-pl test`` for the model card (default:
            one next to the checkpoint, if any). Every export writes a card: see ``model_card.py``.
    """
    target, fmt = resolve_format(Path(out), format)
    module = MulCLIP.load_trained(ckpt, trust_pickle=trust_pickle)
    clip, name = module.backbone.clip, module.hparams.model_name
    if fmt in ("pt", "safetensors"):
        target.parent.mkdir(parents=True, exist_ok=True)
        state = plain_open_clip_state(clip)  # one merged position table, as open_clip expects
        if fmt == "pt":
            torch.save(state, target)
        else:
            from safetensors.torch import save_file

            save_file(state, str(target))
    elif fmt == "hf":
        try:
            export_hf_dir(clip, target, open_clip_config(clip, name)["preprocess_cfg"])
        except ImportError as exc:  # transformers is an optional extra
            raise ExportError(str(exc)) from exc
    elif fmt == "onnx":
        try:
            export_onnx_dir(clip, name, target, source=str(ckpt))
        except ImportError as exc:  # onnx and onnxscript are an optional extra
            raise ExportError(str(exc)) from exc
    elif fmt == "longclip":
        write_longclip(clip, name, target)
    else:
        export_open_clip_dir(clip, name, target)
    write_model_card(target, fmt, ckpt, name, int(clip.context_length), results, trust_pickle)
    print(f"exported {name} ({clip.context_length} text positions) as {fmt} to {target}")
    return target


def resolve_format(target: Path, format: str | None) -> tuple[Path, str]:
    """Where to write and in which format: the explicit ``format``, else the one ``target``'s
    suffix implies. A file format adds its suffix to a path without one; a folder format with a
    weights-file suffix, or two file formats that disagree, are refused."""
    implied = FILE_FORMATS.get(target.suffix)
    if format is None:
        return target, implied or "open_clip"
    if format == "longclip" and target.suffix in ("", ".pt"):  # Long-CLIP reads a torch .pt file
        return target.with_suffix(".pt"), format
    if format not in FOLDER_FORMATS + tuple(FILE_FORMATS.values()):
        raise ExportError(f"export format must be open_clip, pt, safetensors, hf, onnx or longclip, got {format!r}"
                          + (f" (longclip writes a .pt file, not {target.suffix})" if format == "longclip" else ""))
    if format in FOLDER_FORMATS and implied:
        raise ExportError(
            f"--format {format} writes a folder, but --out {target} ends in {target.suffix}; "
            f"pass a folder path, or --format {implied} for a single weights file"
        )
    if format in FILE_FORMATS.values() and implied not in (None, format):
        raise ExportError(f"--out {target} names a .{implied} file but --format is {format}; change one of them")
    if format in FILE_FORMATS.values() and implied is None:
        return target.with_name(f"{target.name}.{format}"), format
    return target, format
