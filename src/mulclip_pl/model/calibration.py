"""Local Token Calibration (docs/METHOD.md §3).

[ours, following FineLIP's token refinement] ``W = softmax_over_N(s * MLP(LN(X))^T)`` (Ns x N),
``X' = normalize(W X)``: each of the Ns calibrated tokens is a learned convex combination of the
N input tokens, so the sequence is both refined and shortened. Padding and special tokens are
excluded through ``mask``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TokenCalibration(nn.Module):
    def __init__(self, dim: int, num_out: int, hidden_ratio: float = 0.2) -> None:
        super().__init__()
        if num_out < 1:
            raise ValueError(f"calibrated token count must be >= 1, got {num_out}")
        hidden = max(1, round(dim * hidden_ratio))
        self.norm = nn.LayerNorm(dim)
        self.scorer = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, num_out))
        self.scale = nn.Parameter(torch.ones(1))  # 1 element, not 0-dim: FSDP shards no 0-dim parameter
        self.num_out = num_out

    def assignment(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N, d), (B, N) -> (B, Ns, N) weights, each row a distribution over valid tokens."""
        logits = self.scale * self.scorer(self.norm(x)).transpose(1, 2)
        if mask is not None:
            # A row without any valid token (never produced by the data pipeline) falls back to
            # uniform weights instead of NaN.
            mask = mask | ~mask.any(dim=1, keepdim=True)
            logits = logits.masked_fill(~mask[:, None, :], float("-inf"))
        return logits.softmax(dim=-1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N, d) tokens -> (B, Ns, d) L2-normalised calibrated tokens."""
        return F.normalize(self.assignment(x, mask) @ x, dim=-1)
