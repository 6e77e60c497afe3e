"""Hard-negative accuracy: does the image prefer its caption over every altered copy of it?

A record may carry N hard negatives (SynthLong: one attribute of one object changed; FG-OVD-style
sets: several). A row counts as correct when its true caption scores strictly above all of them:
ties count against, as in retrieval, so a collapsed model cannot score by ties.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

from mulclip_pl.metrics.retrieval import first_occurrence


def hard_negative_hits(image_emb: torch.Tensor, positive_emb: torch.Tensor, negative_emb: torch.Tensor) -> torch.Tensor:
    """(B, d), (B, d), (B, N, d) or (B, d) -> (B,) bool: positive strictly above every negative."""
    if negative_emb.ndim == 2:
        negative_emb = negative_emb[:, None]
    # One op for all scores: a separate sum and einsum round differently, and a negative equal
    # to the positive would then win or lose by rounding instead of tying.
    scores = (image_emb[:, None, :] * torch.cat([positive_emb[:, None], negative_emb], dim=1)).sum(-1)  # (B, 1 + N)
    return scores[:, 0] > scores[:, 1:].amax(dim=1)


def hard_negative_accuracy(image_emb: torch.Tensor, positive_emb: torch.Tensor, negative_emb: torch.Tensor) -> float:
    """Percent of rows where the positive beats every negative."""
    return 100.0 * hard_negative_hits(image_emb, positive_emb, negative_emb).float().mean().item()


class HardNegativeAccuracy(Metric):
    """``hard_negative_acc`` in percent, deduplicated by image index under DDP."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("hits", default=[], dist_reduce_fx="cat")
        self.add_state("index", default=[], dist_reduce_fx="cat")

    def update(self, image_emb: torch.Tensor, positive_emb: torch.Tensor, negative_emb: torch.Tensor,
               index: torch.Tensor) -> None:
        self.hits.append(hard_negative_hits(image_emb.float(), positive_emb.float(), negative_emb.float()))
        self.index.append(index)

    def compute(self) -> dict[str, torch.Tensor]:
        hits = torch.cat(self.hits) if isinstance(self.hits, list) else self.hits
        index = torch.cat(self.index) if isinstance(self.index, list) else self.index
        return {"hard_negative_acc": 100.0 * hits[first_occurrence(index)].float().mean()}
