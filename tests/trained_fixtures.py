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
    # no --model.preset: the checkpoint's (a full model's heads cannot load into a global_only one, issue #50)
    return ["predict", "--model.model_name", TEST_MODEL, "--ckpt_path", str(ckpt),
            "--data", "GenericCaptions", "--data.test_file", str(captions), "--data.num_workers", "0",
            "--data.eval_batch_size", str(batch_size), "--trainer.accelerator", "cpu", "--trainer.logger", "false",
            "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(root)]


# A QuickGELU ViT with 64-wide heads (what Long-CLIP builds), so that every export format applies.
LONGCLIP_MODEL = "mulclip-longclip-test"
LONGCLIP_CONFIG = {
    "embed_dim": 32, "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 2},
}
COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "white", "black"]


def register_longclip_model(folder) -> str:
    """Make ``LONGCLIP_MODEL`` known to open_clip (a config file in ``folder``); returns the name."""
    import open_clip

    path = folder / f"{LONGCLIP_MODEL}.json"
    path.write_text(json.dumps(LONGCLIP_CONFIG))
    open_clip.add_model_config(path)
    return LONGCLIP_MODEL


def long_caption(i: int, words: int) -> str:
    """A caption of about ``words`` + 2 tokens naming colour ``i`` in every sentence."""
    sentence = f"the {COLOURS[i % len(COLOURS)]} thing {i} is here. "
    return " ".join((sentence * (words // 6 + 1)).split()[:words])


def train_moved_positions(root, steps: int = 6, lr: float = 1e-2):
    """A real ``mulclip-pl fit`` (full MulCLIP, Long-CLIP position layout) of ``LONGCLIP_MODEL`` on 8
    coloured images with captions up to 247 tokens, at a learning rate high enough that text positions
    20-247 move well away from where the stretch put them. Returns the path of ``last.ckpt``.

    An untrained model hides every bug that mixes up the frozen and the trained position table (both
    are equal before training), so the every-path and ONNX tests start from this one.
    """
    from mulclip_pl.cli import main

    register_longclip_model(root)
    rows = [{"image": f"{i}.png", "caption": long_caption(i, 20 + 191 * (i % 2)), "id": f"p{i}",  # 25 or 248 tokens
             "summary": f"a {COLOURS[i]} thing"} for i in range(8)]
    for i, row in enumerate(rows):
        write_image(root / "data" / row["image"], (37 * i % 256, 90 + 20 * i, 255 - 23 * i % 256))
    (root / "data" / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    main(["fit", "--model.model_name", LONGCLIP_MODEL, "--model.lr", str(lr), "--model.head_lr", str(lr),
          "--model.warmup_steps", "1", "--model.weight_decay", "0.1", "--seed_everything", "0",
          "--data", "GenericCaptions", "--data.train_file", str(root / "data" / "train.jsonl"),
          "--data.batch_size", "4", "--data.num_workers", "0", "--data.max_sentences", "3",
          "--trainer.max_steps", str(steps), "--trainer.accelerator", "cpu", "--trainer.logger", "false",
          "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
          "--trainer.default_root_dir", str(root / "run"), "--checkpoint.dirpath", str(root / "ckpt")])
    return root / "ckpt" / "last.ckpt"
