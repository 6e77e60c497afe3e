"""Subcaption-Aggregated Patch (docs/METHOD.md §5): ``L_sub = 1/M sum_i L_batch(vbar_i, t_sub_i)``.

Each sentence embedding scores its own image's patches; the softmax (optionally top-k) weights
pool the patches into a region embedding ``vbar``, which is contrasted with the sentence across
the batch, separately for each sentence index i and only over samples that have sentence i.

Mixed precision: scores, softmax, top-k, pooling and the contrastive logits are computed in fp32
even under ``torch.autocast``. Autocast re-casts matmul/einsum inputs to the low-precision dtype,
so ``.float()`` alone is not enough; the casts sit inside an autocast-disabled region. Inputs may
be bf16/fp16 (gradients come back in their dtype); the weights and ``vbar`` are fp32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mulclip_pl.objectives.contrastive import grouped_infonce
from mulclip_pl.objectives.precision import fp32


def patch_weights(t_sub: torch.Tensor, v_loc: torch.Tensor, tau_s: float, top_k: int | None) -> torch.Tensor:
    """(B, M, d) sentences, (B, P, d) patches, both normalised -> (B, M, P) fp32 aggregation weights."""
    with fp32(v_loc):
        return weights_from_scores(torch.einsum("bmd,bpd->bmp", t_sub.float(), v_loc.float()) / tau_s, top_k)


def weights_from_scores(scores: torch.Tensor, top_k: int | None) -> torch.Tensor:
    """(..., P) temperature-scaled sentence-patch scores -> softmax over each row's ``top_k`` best (None: all)."""
    if top_k is not None and top_k < scores.shape[-1]:
        threshold = scores.topk(top_k, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < threshold, float("-inf"))
    return scores.softmax(dim=-1)


def region_embeddings(weights: torch.Tensor, v_loc: torch.Tensor) -> torch.Tensor:
    """(B, M, P) weights, (B, P, d) patches -> (B, M, d) normalised fp32 region embeddings vbar."""
    with fp32(v_loc):
        return F.normalize(weights.float() @ v_loc.float(), dim=-1)


def subcaption_patch_loss(
    t_sub: torch.Tensor,
    sentence_mask: torch.Tensor,
    v_loc: torch.Tensor,
    logit_scale: torch.Tensor,
    tau_s: float = 0.07,
    top_k: int | None = None,
    sentence_keys: torch.Tensor | None = None,
) -> torch.Tensor:
    """t_sub: (B, M, d) normalised, sentence_mask: (B, M) True where sentence i exists.

    sentence_keys: (B, M, 2) ``identical_texts.text_keys`` of the sentences: the same sentence of
    two images is not a negative, and indices i where no sentence has a negative are left out of
    the mean. None = the paper's ``1/|I|`` over every present index.
    """
    with fp32(v_loc):  # grouped_infonce's .float() casts alone would be re-cast by autocast
        vbar = region_embeddings(patch_weights(t_sub, v_loc, tau_s, top_k), v_loc)
        return sap_contrast(vbar, t_sub, sentence_mask, logit_scale, sentence_keys)


def sap_contrast(vbar: torch.Tensor, t_sub: torch.Tensor, sentence_mask: torch.Tensor, logit_scale: torch.Tensor,
                 sentence_keys: torch.Tensor | None = None) -> torch.Tensor:
    """SAP's batch-level half, once the regions ``vbar`` (B, M, d) are pooled: each sentence index
    contrasted across the batch. Training calls it on regions pooled chunk by chunk
    (``module/sample_features.py``), so a chunked step can cache them; see ``subcaption_patch_loss``."""
    keys = None if sentence_keys is None else sentence_keys.transpose(0, 1)
    with fp32(vbar):
        return grouped_infonce(vbar.transpose(0, 1), t_sub.transpose(0, 1), logit_scale, sentence_mask.T, keys)
