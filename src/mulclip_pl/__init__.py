"""mulclip-pl: MulCLIP long-caption fine-tuning of CLIP (PyTorch Lightning, open_clip).

From Python, a trained model in open_clip's shape (see ``mulclip_pl.api``)::

    model, preprocess, tokenizer = mulclip_pl.load("runs/docci/last.ckpt")   # or an export folder

Names are imported on first use, so ``import mulclip_pl.data`` does not pull in the model code. The wings
(``weights``, ``model``, ``data``, ``module``, ``export``, ...) and which imports which: docs/ARCHITECTURE.md.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load", "create_model_and_transforms", "get_tokenizer"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from mulclip_pl import api

        return getattr(api, name)
    raise AttributeError(f"module 'mulclip_pl' has no attribute {name!r}")
