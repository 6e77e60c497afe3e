"""Symmetric InfoNCE over the batch (docs/METHOD.md §2, §8), masked and grouped, DDP-exact.

This is the one module that knows about ranks. Each rank scores its *local* rows against the
*global* columns gathered from all ranks; the gather keeps the gradient of every rank's
contribution (``_GatherWithGrad`` sums them back onto the local shard), so that after DDP
averages parameter gradients, W ranks with batch B give exactly the loss and gradients of one
process with batch W*B (open_clip's ``local_loss=True, gather_with_grad=True``).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from mulclip_pl.objectives.identical_texts import has_negative, same_text
from mulclip_pl.objectives.precision import fp32


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _GatherWithGrad(torch.autograd.Function):
    """all_gather along ``dim`` whose backward all-reduces and keeps the local slice.

    Implemented with all_reduce rather than reduce_scatter so that it also runs on gloo (CPU).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, dim: int) -> torch.Tensor:
        ctx.dim, ctx.local_size = dim, x.shape[dim]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=dim)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous()
        dist.all_reduce(grad)
        start = dist.get_rank() * ctx.local_size
        return grad.narrow(ctx.dim, start, ctx.local_size), None


def gather(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Concatenate ``x`` from all ranks along ``dim`` (identity without a process group)."""
    _, world = _world()
    if world == 1:
        return x
    if x.requires_grad:
        return _GatherWithGrad.apply(x, dim)
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=dim)


def grouped_infonce(
    a: torch.Tensor,
    b: torch.Tensor,
    logit_scale: torch.Tensor,
    valid: torch.Tensor | None = None,
    text_keys: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over groups of the symmetric InfoNCE between matching rows of ``a`` and ``b``.

    a, b: (G, N, d) L2-normalised, the local shard of each of G independent contrastive problems
    (G = 1 for the global loss; G = M sentence indices for SAP). valid: (G, N) bool, rows that
    take part (absent sentences are False): they are neither anchors nor negatives. Each group's
    loss is the mean over its valid rows *across all ranks*; groups with no valid row are skipped.
    text_keys: (G, N, 2) ``identical_texts.text_keys`` of the texts; where given, pairs holding the
    same text are not negatives of each other (in either direction, on any rank), and only groups
    with at least one negative are averaged. None = the paper's loss.
    """
    groups, n_local, _ = a.shape
    if valid is None:
        valid = torch.ones(groups, n_local, dtype=torch.bool, device=a.device)
    rank, world = _world()
    a_all, b_all, valid_all = gather(a, 1), gather(b, 1), gather(valid, 1)
    target = (torch.arange(n_local, device=a.device) + rank * n_local).repeat(groups)
    n_valid = valid_all.sum(dim=1)  # (G,) global count, identical on every rank
    present, not_negative = n_valid > 0, None
    if text_keys is not None:
        keys_all = gather(text_keys, 1)
        not_negative = same_text(text_keys, keys_all, target)
        present = has_negative(keys_all, valid_all)
    row_loss = 0.5 * (
        _row_cross_entropy(a, b_all, logit_scale, valid, valid_all, target, not_negative)
        + _row_cross_entropy(b, a_all, logit_scale, valid, valid_all, target, not_negative)
    )  # (G, N)
    group_loss = world * row_loss.sum(dim=1) / n_valid.clamp(min=1)
    if not present.any():
        return a.sum() * 0.0  # keeps the graph connected, contributes nothing
    return group_loss[present].mean()


def _row_cross_entropy(
    anchors: torch.Tensor,
    candidates: torch.Tensor,
    logit_scale: torch.Tensor,
    valid_rows: torch.Tensor,
    valid_cols: torch.Tensor,
    target: torch.Tensor,
    not_negative: torch.Tensor | None = None,
) -> torch.Tensor:
    """(G, N) cross-entropy of each local anchor against all valid candidates; 0 for invalid rows.

    not_negative: (G, N, N_all) candidates left out of the anchor's denominator (same text)."""
    with fp32(anchors):
        logits = logit_scale.float() * torch.einsum("gnd,gmd->gnm", anchors.float(), candidates.float())
        logits = logits.masked_fill(~valid_cols[:, None, :], float("-inf"))
        if not_negative is not None:
            logits = logits.masked_fill(not_negative, float("-inf"))
        # Invalid rows would be all -inf at their target: give them finite logits, then zero them.
        logits = logits.masked_fill(~valid_rows[:, :, None], 0.0)
        ce = F.cross_entropy(logits.flatten(0, 1), target, reduction="none").view_as(valid_rows)
    return ce * valid_rows


def infonce(a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor,
            text_keys: torch.Tensor | None = None) -> torch.Tensor:
    """CLIP's symmetric InfoNCE for (N, d) L2-normalised pairs; text_keys (N, 2): see grouped_infonce."""
    keys = None if text_keys is None else text_keys.unsqueeze(0)
    return grouped_infonce(a.unsqueeze(0), b.unsqueeze(0), logit_scale, text_keys=keys)
