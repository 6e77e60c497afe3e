"""Trained-looking checkpoints and small caption files, written in code for the API / export / predict tests."""

from __future__ import annotations

import json

import lightning as L
import torch

from mulclip_pl.module import MulCLIP
from tests.conftest import TEST_MODEL, write_image

# Short, past position 20, past CLIP's 77 tokens (all inside 248).
CAPTIONS = ["a red square.", "A green circle sits left of a small blue triangle on a white table.",
            "Two dogs play in the park. " * 12]


def write_checkpoint(path, seed=0, model_name=TEST_MODEL, **hparams):
    """A checkpoint whose every trainable tensor is perturbed, so that a swapped or dropped tensor
    (e.g. the trained position table read as the frozen one) changes the embeddings."""
    torch.manual_seed(seed)
    module = MulCLIP(model_name=model_name, preset="global_only", **hparams)
    with torch.no_grad():
        for param in module.parameters():
            param.add_(0.05 * torch.randn_like(param))
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(path)  # a whole Lightning checkpoint: `--ckpt_path` takes it too
    return path


def write_captions(root, n=len(CAPTIONS)):
    """A GenericCaptions jsonl of ``n`` images (distinct colours) with ids ``r0``, ``r1``, ..."""
    rows = [{"image": f"{i}.png", "caption": CAPTIONS[i % len(CAPTIONS)], "id": f"r{i}"} for i in range(n)]
    for i, row in enumerate(rows):
        write_image(root / row["image"], (37 * i % 256, 90, 255 - 23 * i % 256))
    path = root / "captions.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path, rows


def predict_args(root, ckpt, captions, batch_size=2):
    return ["predict", "--model.model_name", TEST_MODEL, "--model.preset", "global_only", "--ckpt_path", str(ckpt),
            "--data", "GenericCaptions", "--data.test_file", str(captions), "--data.num_workers", "0",
            "--data.eval_batch_size", str(batch_size), "--trainer.accelerator", "cpu", "--trainer.logger", "false",
            "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(root)]
