"""A trained model from Python, in open_clip's shape: ``model, preprocess, tokenizer = load(SOURCE)``.

SOURCE is a ``mulclip-pl fit`` checkpoint or an ``export`` folder (``--format open_clip``). The model
is a plain open_clip ``CLIP`` at the trained context (248 positions: Long-CLIP's two position
tables merged into one, as an export holds them), in eval mode: ``encode_image`` /
``encode_text`` (``normalize=True`` for unit vectors) give the embeddings ``mulclip-pl predict``
writes. ``preprocess`` is the model's eval transform (PIL image -> tensor); ``tokenizer`` turns
texts into (N, 248) ids, counting the captions it has to cut (``n_truncated``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import open_clip
import torch
from torch import nn

from mulclip_pl.errors import PretrainedWeightsError
from mulclip_pl.model.plain import plain_clip
from mulclip_pl.module import MulCLIP
from mulclip_pl.tokenizer import LONG_CONTEXT, LongTextTokenizer, OverflowPolicy
from mulclip_pl.weights.checkpoints import read_lightning_checkpoint

Transform = Callable[..., torch.Tensor]
CONFIG_FILE = "open_clip_config.json"


def load(source: str | Path, device: str | torch.device = "cpu", trust_pickle: bool = False,
         overflow: OverflowPolicy = "truncate") -> tuple[nn.Module, Transform, LongTextTokenizer]:
    """(model, eval transform, tokenizer) of a checkpoint or an export folder.

    ``trust_pickle``: read a checkpoint that needs full unpickling (only files you trust).
    ``overflow``: what the tokenizer does with a text longer than the context ('truncate' or 'error').
    """
    model, _, preprocess = create_model_and_transforms(source, device, trust_pickle)
    return model, preprocess, LongTextTokenizer(int(model.context_length), overflow)


def create_model_and_transforms(source: str | Path, device: str | torch.device = "cpu",
                                trust_pickle: bool = False) -> tuple[nn.Module, Transform, Transform]:
    """open_clip's triple: (model, train transform, eval transform)."""
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / CONFIG_FILE).is_file():
            raise PretrainedWeightsError(
                f"{path} has no {CONFIG_FILE}: not an open_clip export. Pass a `mulclip-pl fit` checkpoint or a "
                "folder written by `mulclip-pl export` (a --format hf folder loads with transformers' CLIPModel)")
        model, train, val = open_clip.create_model_and_transforms(f"local-dir:{path}")
    elif path.is_file():
        model = _from_checkpoint(path, trust_pickle)
        train, val = (_transform(model, is_train) for is_train in (True, False))
    else:
        raise PretrainedWeightsError(f"model not found: {path} (expected a .ckpt file or an export folder)")
    return model.to(device).eval(), train, val


def get_tokenizer(source: str | Path, overflow: OverflowPolicy = "truncate") -> LongTextTokenizer:
    """The tokenizer of ``source`` at its context (248 after the stretch), without building the model."""
    path = Path(source).expanduser()
    if path.is_dir() and (path / CONFIG_FILE).is_file():
        return LongTextTokenizer(open_clip.get_tokenizer(f"local-dir:{path}").context_length, overflow)
    _, hparams = read_lightning_checkpoint(path, with_hparams=True)
    return LongTextTokenizer(int(hparams.get("context_length", LONG_CONTEXT)), overflow)


def _from_checkpoint(path: Path, trust_pickle: bool) -> nn.Module:
    """The checkpoint's towers as a plain open_clip CLIP: what ``mulclip-pl export`` would write."""
    module = MulCLIP.load_trained(path, trust_pickle=trust_pickle)
    return plain_clip(module.backbone.clip, module.hparams.model_name, source=str(path))


def _transform(model: nn.Module, is_train: bool) -> Transform:
    visual = model.visual
    size = visual.image_size
    return open_clip.image_transform(size[0] if isinstance(size, tuple) else size, is_train=is_train,
                                     mean=getattr(visual, "image_mean", None), std=getattr(visual, "image_std", None))
