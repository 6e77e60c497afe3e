"""Image-text retrieval recall (I2T and T2I R@1/5/10) as a torchmetrics ``Metric``.

Several captions per image are supported (COCO / Flickr30K: an image query hits if *any* of its
captions is in the top K; each caption is a separate text query). Ties are resolved
pessimistically: a candidate that scores *equal* to the ground truth ranks above it, so a
collapsed model cannot score well by ties. Similarities are computed in chunks, so a 25k x 5k
COCO matrix never has to exist at once. Under DDP, the states are gathered and samples that a
distributed sampler repeated are dropped by their indices.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

KS = (1, 5, 10)


class RetrievalRecall(Metric):
    full_state_update = False

    def __init__(self, ks: tuple[int, ...] = KS, chunk_size: int = 2048) -> None:
        super().__init__()
        self.ks, self.chunk_size = ks, chunk_size
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
        return recall_at_k(image_emb, text_emb, text_image_col, self.ks, self.chunk_size)


def recall_at_k(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    text_image: torch.Tensor,
    ks: tuple[int, ...] = KS,
    chunk_size: int = 2048,
) -> dict[str, torch.Tensor]:
    """R@K in percent. text_image: (T,) index of each caption's image in ``image_emb`` (I, d)."""
    t2i_rank = torch.cat([
        _t2i_ranks(text_emb[s : s + chunk_size], image_emb, text_image[s : s + chunk_size])
        for s in range(0, text_emb.shape[0], chunk_size)
    ])
    i2t_rank = torch.cat([
        _i2t_ranks(image_emb[s : s + chunk_size], text_emb, text_image, s)
        for s in range(0, image_emb.shape[0], chunk_size)
    ])
    out = {}
    for k in ks:
        out[f"i2t_R@{k}"] = 100.0 * (i2t_rank < k).float().mean()
        out[f"t2i_R@{k}"] = 100.0 * (t2i_rank < k).float().mean()
    return out


def _t2i_ranks(texts: torch.Tensor, images: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """0-based pessimistic rank of each caption's image among all images."""
    sims = texts @ images.T  # (t, I)
    gt_score = sims.gather(1, gt[:, None])
    others = torch.ones_like(sims, dtype=torch.bool).scatter_(1, gt[:, None], False)
    return ((sims >= gt_score) & others).sum(dim=1)


def _i2t_ranks(images: torch.Tensor, texts: torch.Tensor, text_image: torch.Tensor, offset: int) -> torch.Tensor:
    """0-based pessimistic rank of each image's best-scoring own caption among all captions."""
    sims = images @ texts.T  # (i, T)
    own = text_image[None, :] == torch.arange(offset, offset + images.shape[0], device=images.device)[:, None]
    best_own = sims.masked_fill(~own, float("-inf")).amax(dim=1, keepdim=True)
    return ((sims >= best_own) & ~own).sum(dim=1)


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
