"""Image-text retrieval recall (I2T and T2I R@1/5/10) as a torchmetrics ``Metric``.

Several captions per image are supported (COCO / Flickr30K: an image query hits if *any* of its
captions is in the top K; each caption is a separate text query). Similarities are computed in
fp32 and in chunks, so a 25k x 5k COCO matrix never has to exist at once. Under DDP, the states
are gathered and samples that a distributed sampler repeated are dropped by their indices.

Ties (``TieRule``) matter where captions repeat (COCO has identical captions on different images:
an image then ties its own caption with another image's):
- ``pessimistic`` (default): a candidate scoring *equal* to the ground truth ranks above it, so a
  collapsed model (all embeddings alike) cannot score by ties.
- ``clip_benchmark``: equal candidates rank in data-set order (the earlier one first), which is
  what clip_benchmark's ``torch.topk`` does on the CPU with rows of at least 64·K candidates
  (every real benchmark): use it to compare with figures that clip_benchmark produced.
"""

from __future__ import annotations

from typing import Literal

import torch
from torchmetrics import Metric

KS = (1, 5, 10)
TieRule = Literal["pessimistic", "clip_benchmark"]


class RetrievalRecall(Metric):
    full_state_update = False

    def __init__(self, ks: tuple[int, ...] = KS, chunk_size: int = 2048, ties: TieRule = "pessimistic") -> None:
        super().__init__()
        _check_ties(ties)
        self.ks, self.chunk_size, self.ties = ks, chunk_size, ties
        for name in ("image_emb", "image_id", "text_emb", "text_id", "text_image_id"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(
        self,
        image_emb: torch.Tensor,
        image_id: torch.Tensor,
        text_emb: torch.Tensor,
        text_id: torch.Tensor,
        text_image_id: torch.Tensor,
    ) -> None:
        """(B, d) image embeddings with ids; (T, d) caption embeddings with ids and image ids."""
        self.image_emb.append(image_emb.detach().float())
        self.image_id.append(image_id)
        self.text_emb.append(text_emb.detach().float())
        self.text_id.append(text_id)
        self.text_image_id.append(text_image_id)

    def compute(self) -> dict[str, torch.Tensor]:
        image_emb, image_id = _dedup(_cat(self.image_emb), _cat(self.image_id))
        text_emb, text_id = _cat(self.text_emb), _cat(self.text_id)
        text_emb, keep = _dedup(text_emb, text_id, return_index=True)
        text_image_id = _cat(self.text_image_id)[keep]
        # Map each caption's image id to a column of the image matrix.
        column_of = {int(i): c for c, i in enumerate(image_id.tolist())}
        missing = [int(i) for i in text_image_id.tolist() if int(i) not in column_of]
        if missing:
            raise ValueError(f"captions refer to images never seen by the metric: ids {missing[:5]}")
        text_image_col = torch.tensor([column_of[int(i)] for i in text_image_id.tolist()], device=text_emb.device)
        return recall_at_k(image_emb, text_emb, text_image_col, self.ks, self.chunk_size, self.ties)


def recall_at_k(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    text_image: torch.Tensor,
    ks: tuple[int, ...] = KS,
    chunk_size: int = 2048,
    ties: TieRule = "pessimistic",
) -> dict[str, torch.Tensor]:
    """R@K in percent. text_image: (T,) index of each caption's image in ``image_emb`` (I, d);
    rows of both are in data-set order (what ``ties='clip_benchmark'`` orders equal scores by)."""
    _check_ties(ties)
    image_emb, text_emb = image_emb.float(), text_emb.float()
    t2i_rank = torch.cat([
        _t2i_ranks(text_emb[s : s + chunk_size], image_emb, text_image[s : s + chunk_size], ties)
        for s in range(0, text_emb.shape[0], chunk_size)
    ])
    i2t_rank = torch.cat([
        _i2t_ranks(image_emb[s : s + chunk_size], text_emb, text_image, s, ties)
        for s in range(0, image_emb.shape[0], chunk_size)
    ])
    out = {}
    for k in ks:
        out[f"i2t_R@{k}"] = 100.0 * (i2t_rank < k).float().mean()
        out[f"t2i_R@{k}"] = 100.0 * (t2i_rank < k).float().mean()
    return out


def _check_ties(ties: str) -> None:
    if ties not in ("pessimistic", "clip_benchmark"):
        raise ValueError(f"ties must be 'pessimistic' or 'clip_benchmark', got {ties!r}")


def _ahead(sims: torch.Tensor, score: torch.Tensor, position: torch.Tensor, ties: TieRule) -> torch.Tensor:
    """(n, C) bool: candidates ranked above the one at column ``position`` (n, 1) that scores
    ``score`` (n, 1): higher scores, and equal ones (all, or those listed earlier)."""
    equal = sims == score
    if ties == "clip_benchmark":
        equal &= torch.arange(sims.shape[1], device=sims.device)[None, :] < position
    return (sims > score) | equal


def _t2i_ranks(texts: torch.Tensor, images: torch.Tensor, gt: torch.Tensor, ties: TieRule) -> torch.Tensor:
    """0-based rank of each caption's image among all images."""
    sims = texts @ images.T  # (t, I)
    gt_score = sims.gather(1, gt[:, None])
    others = torch.ones_like(sims, dtype=torch.bool).scatter_(1, gt[:, None], False)
    return (_ahead(sims, gt_score, gt[:, None], ties) & others).sum(dim=1)


def _i2t_ranks(images: torch.Tensor, texts: torch.Tensor, text_image: torch.Tensor, offset: int,
               ties: TieRule) -> torch.Tensor:
    """0-based rank of each image's best-placed own caption among the other images' captions."""
    sims = images @ texts.T  # (i, T)
    own = text_image[None, :] == torch.arange(offset, offset + images.shape[0], device=images.device)[:, None]
    best_own = sims.masked_fill(~own, float("-inf")).amax(dim=1, keepdim=True)
    first_best = (own & (sims == best_own)).int().argmax(dim=1, keepdim=True)  # the earliest own caption at best_own
    return (_ahead(sims, best_own, first_best, ties) & ~own).sum(dim=1)


def _cat(parts: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    return torch.cat(parts) if isinstance(parts, list) else parts


def first_occurrence(ids: torch.Tensor) -> torch.Tensor:
    """Positions of the first occurrence of each distinct id, in id order.

    DistributedSampler pads the last batch by repeating samples; gathering then duplicates them.
    """
    unique, inverse = torch.unique(ids, return_inverse=True)
    first = torch.full((unique.shape[0],), ids.shape[0], dtype=torch.long, device=ids.device)
    return first.scatter_reduce(0, inverse, torch.arange(ids.shape[0], device=ids.device), reduce="amin")


def _dedup(values: torch.Tensor, ids: torch.Tensor, return_index: bool = False):
    first = first_occurrence(ids)
    return (values[first], first) if return_index else (values[first], ids[first])
