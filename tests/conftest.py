"""Shared fixtures: the 2-layer ``mulclip-test`` CLIP and small images written in code."""

from __future__ import annotations

import os

import pytest
import torch
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.register_assert_rewrite("tests.helpers.training")  # its resume check's asserts explain themselves
torch.set_num_threads(2)

TEST_MODEL = "mulclip-test"  # 32 px, patch 8 (16 patches), width 64, 2 layers, d = 32


@pytest.fixture
def tokenizer():
    from mulclip_pl.tokenizer import LongTextTokenizer

    return LongTextTokenizer()


def write_image(path, colour=(200, 30, 30), size=32) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), colour).save(path)


def make_batch(batch_size: int, tokenizer, max_sentences: int = 3, image_size: int = 32, seed: int = 0) -> dict:
    """A learnable batch: sample b has its own colour image and captions naming that colour."""
    generator = torch.Generator().manual_seed(seed)
    words = ["red", "green", "blue", "yellow", "purple", "orange", "white", "black", "pink", "brown", "grey", "cyan"]
    images = torch.randn(batch_size, 3, image_size, image_size, generator=generator)
    longs, shorts, subs, masks = [], [], [], []
    for b in range(batch_size):
        colour = words[b % len(words)]
        n_sent = 1 + b % max_sentences
        sentences = [f"sentence {i} says the thing is {colour} number {b}." for i in range(n_sent)]
        longs.append(" ".join(sentences))
        shorts.append(f"a {colour} thing {b}")
        padded = sentences + [""] * (max_sentences - n_sent)
        subs.append(tokenizer(padded))
        masks.append(torch.arange(max_sentences) < n_sent)
    return {
        "image": images,
        "long": tokenizer(longs),
        "short": tokenizer(shorts),
        "sub": torch.stack(subs),
        "sub_mask": torch.stack(masks),
    }


@pytest.fixture(scope="session")
def strategy_runs(tmp_path_factory):
    """One process, DDP and FSDP fits and every resume between them (``tests/helpers/strategy_runs.py``), run
    once for ``tests/test_resume_matrix.py`` and ``tests/test_fsdp.py``: (root folder, results per run)."""
    from tests.helpers.strategy_runs import run_strategies

    root = tmp_path_factory.mktemp("strategies")
    return root, run_strategies(root)
