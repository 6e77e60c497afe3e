"""Hard-negative accuracy: does the image prefer its caption over the same caption with one attribute changed?"""

from __future__ import annotations

import torch


def hard_negative_accuracy(image_emb: torch.Tensor, positive_emb: torch.Tensor, negative_emb: torch.Tensor) -> float:
    """Percent of rows where <image, positive> > <image, negative> (ties count as failures)."""
    positive = (image_emb * positive_emb).sum(-1)
    negative = (image_emb * negative_emb).sum(-1)
    return 100.0 * (positive > negative).float().mean().item()
