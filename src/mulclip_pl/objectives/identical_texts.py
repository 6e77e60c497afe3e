"""Identical texts are not each other's negatives (docs/METHOD.md §2 and §5, beyond the paper).

When captions come from a small world (SynthLong's summaries and first sentences, stock phrases in
real corpora), one batch can hold the same text for several images. Plain InfoNCE then pushes each
of those images away from a text that describes it too. The losses compare texts through keys:
two random linear hashes of the token ids. Padding is id 0 and adds nothing, so a text has the
same key whatever width its batch was padded to; ranks exchange 2 int64 per text instead of their
token rows. Two different texts share a key with probability below 2^-60.
"""

from __future__ import annotations

import torch

MAX_POSITIONS = 4096  # longest token row the keys are defined for
# Weights < 2^31 times ids < 2^20, summed over 4096 positions, stay below 2^63: no overflow.
_WEIGHTS = torch.randint(1, 2**31, (MAX_POSITIONS, 2), generator=torch.Generator().manual_seed(20512))


def text_keys(tokens: torch.Tensor) -> torch.Tensor:
    """(..., L) token ids, 0 = padding -> (..., 2) int64 keys, equal exactly for identical texts."""
    if tokens.shape[-1] > MAX_POSITIONS:
        raise ValueError(f"text_keys: token rows of {tokens.shape[-1]} positions; at most {MAX_POSITIONS} supported")
    weights = _WEIGHTS[: tokens.shape[-1]].to(tokens.device)
    return (tokens.long()[..., None] * weights).sum(dim=-2)  # elementwise: CUDA has no int64 matmul


def same_text(keys: torch.Tensor, keys_all: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(G, N, 2) local and (G, N_all, 2) gathered keys -> (G, N, N_all) True where column m holds
    the same text as local row n but is not its positive (``target``: (G*N,) column of each row)."""
    same = (keys[:, :, None, :] == keys_all[:, None, :, :]).all(dim=-1)
    positive = torch.zeros_like(same).view(-1, same.shape[-1])
    positive[torch.arange(positive.shape[0], device=same.device), target] = True
    return same & ~positive.view_as(same)


def has_negative(keys_all: torch.Tensor, valid_all: torch.Tensor) -> torch.Tensor:
    """(G,) True where the group's valid rows hold at least two different texts.

    Identity of texts is an equivalence, so a group has a negative iff some valid text differs from
    its first valid one; then every valid row has one (the loss of a row without any is log 1 = 0).
    """
    first = valid_all.long().argmax(dim=1)  # (G,) index of the first valid row (0 when none)
    first_keys = keys_all[torch.arange(keys_all.shape[0], device=keys_all.device), first]  # (G, 2)
    differs = (keys_all != first_keys[:, None, :]).any(dim=-1)
    return (differs & valid_all).any(dim=1)
