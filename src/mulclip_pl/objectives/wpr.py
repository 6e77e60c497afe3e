"""Word-Patch Reconstruction (docs/METHOD.md §4): ``L_word = L_recon,image + L_recon,text``.

Within each sample, calibrated image tokens v' (Kv) are reconstructed from calibrated text
tokens t' (Kt) by cross attention and vice versa; each reconstruction must be closer to its own
original token than the sample's other reconstructions are (InfoNCE over the sample's tokens).
Batched over samples, no loop.

Mixed precision: affinities, softmax, reconstructions and matching logits are computed in fp32
even under ``torch.autocast`` (explicit casts inside an autocast-disabled region; autocast would
otherwise re-cast the einsum/matmul inputs to bf16/fp16). Gradients reach low-precision inputs
in their own dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mulclip_pl.objectives.precision import fp32


@dataclass
class WPRLoss:
    image: torch.Tensor  # L_recon,image, scalar
    text: torch.Tensor  # L_recon,text, scalar

    @property
    def total(self) -> torch.Tensor:
        return self.image + self.text


def reconstruct(v_cal: torch.Tensor, t_cal: torch.Tensor, tau_r: float,
                t_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, Kv, d), (B, Kt, d) -> (V' (B, Kv, d) from text, T' (B, Kt, d) from image), normalised, fp32.

    ``t_mask`` (B, Kt), True = valid: raw (uncalibrated) word tokens come with padding, which
    must not be attended to; calibrated tokens are all valid (None).
    """
    with fp32(v_cal):
        v_cal, t_cal = v_cal.float(), t_cal.float()
        affinity = torch.einsum("bkd,bld->bkl", v_cal, t_cal) / tau_r  # A: (B, Kv, Kt)
        text_logits = affinity if t_mask is None else affinity.masked_fill(~_usable(t_mask)[:, None, :], float("-inf"))
        v_rec = F.normalize(text_logits.softmax(dim=2) @ t_cal, dim=-1)
        t_rec = F.normalize(affinity.transpose(1, 2).softmax(dim=2) @ v_cal, dim=-1)
    return v_rec, t_rec


def token_matching_loss(original: torch.Tensor, reconstructed: torch.Tensor, tau_w: float,
                        mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over samples and valid tokens of CE(<x_j, X'_k> / tau_w, target k = j), k over valid tokens."""
    with fp32(original):
        logits = torch.einsum("bjd,bkd->bjk", original.float(), reconstructed.float()) / tau_w
        target = torch.arange(logits.shape[1], device=logits.device).expand(logits.shape[0], -1)
        if mask is None:
            return F.cross_entropy(logits.flatten(0, 1), target.flatten())
        mask = _usable(mask)
        logits = logits.masked_fill(~mask[:, None, :], float("-inf"))
        losses = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none")
        return losses[mask.flatten()].mean()


def word_patch_reconstruction_loss(
    v_cal: torch.Tensor, t_cal: torch.Tensor, tau_r: float = 0.07, tau_w: float = 0.07,
    t_mask: torch.Tensor | None = None,
) -> WPRLoss:
    """``t_mask`` (B, Kt) marks valid text tokens when they are raw word tokens (None: all valid)."""
    v_rec, t_rec = reconstruct(v_cal, t_cal, tau_r, t_mask)
    return WPRLoss(image=token_matching_loss(v_cal, v_rec, tau_w),
                   text=token_matching_loss(t_cal, t_rec, tau_w, t_mask))


def _usable(mask: torch.Tensor) -> torch.Tensor:
    """A row without any valid token (never produced by the data pipeline) counts all as valid, not NaN."""
    return mask | ~mask.any(dim=1, keepdim=True)
