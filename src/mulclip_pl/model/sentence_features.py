"""Sentence embeddings pooled from the long caption's own token outputs (``--model.sentence_features span``).

The paper encodes each sentence separately: M more text passes per image, which makes a MulCLIP
step cost about 1.24x a Long-CLIP-style one on ViT-B/16 (benchmarks/README.md). This cheaper
option, beyond the paper, averages the long caption's projected token outputs over each
sentence's token span, so SAP needs no extra text pass. The tokens have seen the whole caption up
to their position (the text tower is causal), so such a sentence embedding carries context the
separately encoded sentence does not.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def span_sentence_features(t_tokens: torch.Tensor, spans: torch.Tensor,
                           sentence_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, L, d) token outputs, (B, M, 2) [start, end) spans, (B, M) mask -> (B, M, d) normalised
    mean over each span, and the (B, M) mask of sentences with at least one visible token."""
    positions = torch.arange(t_tokens.shape[1], device=t_tokens.device)
    inside = (positions >= spans[..., :1]) & (positions < spans[..., 1:]) & sentence_mask[..., None]  # (B, M, L)
    counts = inside.sum(-1)
    pooled = torch.einsum("bml,bld->bmd", inside.to(t_tokens.dtype), t_tokens) / counts.clamp(min=1)[..., None]
    return F.normalize(pooled, dim=-1), sentence_mask & (counts > 0)
