"""The model card every ``mulclip-pl export`` writes: what the weights are and how to use them.

A folder export gets ``README.md`` inside it (what a Hugging Face Hub repository shows); a file
export gets ``<name>.README.md`` beside it, since one folder may hold several. The card says:
the base weights and architecture, the training data and configuration (from the checkpoint's
hyper-parameters and the ``config.yaml`` that ``mulclip-pl fit`` writes next to its logs), the
results table if one is found or given, the licence terms that apply, and how to load the export.
"""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
import yaml

from mulclip_pl.eval.report import markdown_table

TRAINER_KEYS = ("max_epochs", "max_steps", "precision", "devices", "num_nodes", "accumulate_grad_batches")
HIDDEN_HPARAMS = {"pretrained", "init_from", "trust_pickle", "cache_dir"}  # shown elsewhere, or not about the model


def card_path(target: Path, fmt: str) -> Path:
    return target / "README.md" if fmt in ("open_clip", "hf", "onnx") else target.with_name(f"{target.stem}.README.md")


def write_model_card(target: Path, fmt: str, ckpt: str | Path, model_name: str, context_length: int,
                     results: str | Path | None = None, trust_pickle: bool = False) -> Path:
    """Write the card of the export at ``target`` (format ``fmt``) made from ``ckpt``; returns its path."""
    ckpt = Path(ckpt).expanduser()
    hparams = saved_hparams(ckpt, trust_pickle)
    config = _find(ckpt, "config.yaml")
    results_file = Path(results).expanduser() if results else _find(ckpt, "results.md") or _find(ckpt, "results.json")
    if results_file is not None and not results_file.is_file():
        raise FileNotFoundError(f"results file not found: {results_file} (pass a results.md or results.json "
                                "written by `mulclip-pl test`)")
    base = hparams.get("init_from") or hparams.get("pretrained")
    kind = "a mulclip-pl checkpoint" if hparams.get("init_from") else "CLIP weights"
    library = {"hf": "transformers", "onnx": "onnx"}.get(fmt, "open_clip")
    sections = [
        f"---\nlibrary_name: {library}\ntags: [clip, long-caption, mulclip]\n---",
        f"# MulCLIP fine-tune of {model_name}\n\nCLIP towers fine-tuned for long captions with MulCLIP "
        f"(arXiv 2512.07128) by mulclip-pl {_version()}, exported as `{fmt}` from `{ckpt.name}`. Text "
        f"context: {context_length} positions{' (Long-CLIP stretch of CLIP 77)' if context_length > 77 else ''}; "
        "no training heads.",
        "## Base weights\n\n" + (f"`{base}` ({kind}), architecture `{model_name}`." if base else
                                 f"none recorded (random initialisation or unknown), architecture `{model_name}`."),
        "## Training\n\n" + _training(hparams, config),
        "## Results\n\n" + _results(results_file),
        "## Licence\n\nThe code that trained these weights (mulclip-pl) is MIT-licensed. The weights derive from "
        "the base weights and the training data above: their licences and terms of use apply to this model too; "
        "check them before you redistribute it.",
        "## How to load it\n\n" + _how_to_load(fmt, target.name, model_name, context_length),
    ]
    path = card_path(target, fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join(sections) + "\n", encoding="utf-8")
    return path


def saved_hparams(ckpt: Path, trust_pickle: bool = False) -> dict[str, Any]:
    """The hyper-parameters as saved (the start files too, which ``MulCLIP.load_trained`` resets); the
    tensors are memory-mapped, not read."""
    try:
        checkpoint = torch.load(ckpt, map_location="cpu", weights_only=not trust_pickle, mmap=True)
    except RuntimeError:  # an old-style (non-zip) file cannot be mapped
        checkpoint = torch.load(ckpt, map_location="cpu", weights_only=not trust_pickle)
    return {k: v for k, v in dict(checkpoint.get("hyper_parameters", {})).items() if not k.startswith("_")}


def _find(ckpt: Path, name: str) -> Path | None:
    """``name`` in the checkpoint's folder or the run folder above it (``RUN/checkpoints/last.ckpt``)."""
    return next((folder / name for folder in (ckpt.parent, ckpt.parent.parent) if (folder / name).is_file()), None)


def _training(hparams: dict[str, Any], config: Path | None) -> str:
    settings = ", ".join(f"{k}={v}" for k, v in sorted(hparams.items()) if k not in HIDDEN_HPARAMS)
    lines = [f"- model settings: {settings}"]
    if config is None:
        lines.append("- data: not recorded (no config.yaml next to the checkpoint)")
        return "\n".join(lines)
    text = config.read_text(encoding="utf-8")
    saved = yaml.safe_load(text) or {}
    data = saved.get("data") or {}
    if isinstance(data, dict) and "class_path" in data:
        arguments = ", ".join(f"{k}={v}" for k, v in (data.get("init_args") or {}).items() if v is not None)
        lines.append(f"- data: `{data['class_path'].rsplit('.', 1)[-1]}` ({arguments})")
    trainer = saved.get("trainer") or {}
    lines.append("- trainer: " + ", ".join(f"{k}={trainer[k]}" for k in TRAINER_KEYS if trainer.get(k) is not None)
                 + f", seed={saved.get('seed_everything')}")
    lines.append(f"\n<details><summary>config.yaml</summary>\n\n```yaml\n{text.strip()}\n```\n</details>")
    return "\n".join(lines)


def _results(results: Path | None) -> str:
    if results is None:
        return ("No results table was found next to the checkpoint; `mulclip-pl test` writes one "
                "(`results.md`), and `export --results FILE` puts it here.")
    if results.suffix == ".json":
        saved = json.loads(results.read_text(encoding="utf-8"))
        return markdown_table(saved["results"], saved["model"]).strip()
    return results.read_text(encoding="utf-8").strip()


def _how_to_load(fmt: str, here: str, model_name: str, context: int) -> str:
    """A snippet for the export named ``here``, run from the folder that holds it."""
    if fmt == "onnx":
        return _how_to_load_onnx(here, model_name, context)
    if fmt == "open_clip":
        code = (f"import mulclip_pl\nmodel, preprocess, tokenizer = mulclip_pl.load('{here}')\n"
                f"# or open_clip itself:\nimport open_clip\n"
                f"model, _, preprocess = open_clip.create_model_and_transforms('local-dir:{here}')\n"
                f"tokenizer = open_clip.get_tokenizer('local-dir:{here}')  # {context} tokens")
    elif fmt == "hf":
        code = (f"from transformers import CLIPModel, CLIPTokenizer, CLIPImageProcessor\n"
                f"model = CLIPModel.from_pretrained('{here}')\ntokenizer = CLIPTokenizer.from_pretrained('{here}')  "
                f"# {context} positions\nprocessor = CLIPImageProcessor.from_pretrained('{here}')")
    elif fmt == "longclip":
        code = (f"# in a checkout of github.com/beichenzbc/Long-CLIP\nfrom model import longclip\n"
                f"model, preprocess = longclip.load('{here}', device='cpu')\n"
                f"tokens = longclip.tokenize(['a long caption ...'], truncate=True)  # {context} tokens")
    else:
        code = (f"import open_clip\nmodel = open_clip.create_model('{model_name}', pretrained='{here}', "
                f"force_context_length={context})\ntokenizer = open_clip.get_tokenizer('{model_name}', "
                f"context_length={context})")
    return f"From the folder that holds `{here}`:\n\n```python\n{code}\n```"


def _how_to_load_onnx(here: str, model_name: str, context: int) -> str:
    """The onnxruntime snippet, and what the two graphs take and give (``onnx.py``)."""
    code = (f"import json\nimport onnxruntime as ort\nimport open_clip\nfrom PIL import Image\n"
            f"text_encoder = ort.InferenceSession('{here}/text_encoder.onnx')\n"
            f"image_encoder = ort.InferenceSession('{here}/image_encoder.onnx')\n"
            f"tokenizer = open_clip.get_tokenizer('{model_name}', context_length={context})  # see tokenizer.md\n"
            f"cfg = json.load(open('{here}/preprocessor_config.json'))\n"
            f"preprocess = open_clip.image_transform(cfg['crop_size']['height'], is_train=False, "
            f"mean=cfg['image_mean'], std=cfg['image_std'])\n"
            f"text = text_encoder.run(None, {{'text': tokenizer(['a long caption ...']).numpy()}})[0]\n"
            f"image = image_encoder.run(None, {{'image': preprocess(Image.new('RGB', (320, 240)))[None].numpy()}})[0]")
    return (f"From the folder that holds `{here}`:\n\n```python\n{code}\n```\n\n"
            f"Both graphs take any batch size N. `text_encoder.onnx` takes (N, {context}) int64 token ids (open_clip's "
            f"BPE tokenizer at {context} positions, zero padded; its second dimension is fixed, so onnxruntime refuses "
            "other lengths with a shape error) and finds the end token inside the graph (argmax of the ids), as CLIP "
            "does. Both give unnormalised embeddings (N, d), equal to the model's `encode_image` / `encode_text`: "
            "divide by their norms for cosine similarities.")


def _version() -> str:
    try:
        return version("mulclip-pl")
    except PackageNotFoundError:
        return "(development copy)"
