"""Long text for CLIP: Long-CLIP's knowledge-preserving positional stretch (the 248-token tokenizer: ``tokenizer.py``).

METHOD.md section 1: positions 0..19 are kept as they are (CLIP learned them well, and most
short captions live there); positions 20..76 are linearly interpolated by a factor of 4, giving
20 + 57 * 4 = 248 positions.

Position schemes for fine-tuning a stretched model (``PositionScheme``):
- ``longclip`` (Long-CLIP's reference code): two 248-row tables, ``positional_embedding`` (a
  frozen buffer) and ``positional_embedding_res`` (trainable); position j uses the frozen row
  for j < keep and the trainable row otherwise, so the first ``keep`` positions never move.
  The model becomes a ``LongPositionsCLIP``: open_clip's ``CLIP`` whose ``positional_embedding``
  *attribute* is that one merged table, so every method reads the same positions (open_clip's own
  ``encode_text`` and ``forward``, our backbone, an ONNX trace), while its state dict keeps
  Long-CLIP's two tables under Long-CLIP's names.
- ``single``: one trainable 248-row ``positional_embedding``.
Both layouts export to one merged table (``merged_positions``) that plain open_clip loads.
"""

from __future__ import annotations

from typing import Literal

import torch
from open_clip.model import CLIP
from torch import nn

from mulclip_pl.weights.files import RES_KEY  # Long-CLIP's name for the trainable table

KEEP_POSITIONS = 20

PositionScheme = Literal["longclip", "single"]


def stretched_length(old_length: int, keep: int = KEEP_POSITIONS, factor: int = 4) -> int:
    return keep + (old_length - keep) * factor


def stretch_positional_embedding(
    pos: torch.Tensor, keep: int = KEEP_POSITIONS, factor: int = 4
) -> torch.Tensor:
    """(L, d) -> (keep + (L - keep) * factor, d), Long-CLIP's knowledge-preserving stretch.

    New position ``keep + factor * i + r`` is ``(1 - r/factor) * p[keep + i] + (r/factor) * p[keep + i + 1]``;
    past the last learned position the line through the last two positions is extended, exactly
    as Long-CLIP's reference code does.
    """
    if pos.ndim != 2 or pos.shape[0] <= keep + 1:
        raise ValueError(f"positional embedding of shape {tuple(pos.shape)} is too short to keep {keep}")
    tail = pos[keep:]
    extrapolated = 2 * tail[-1:] - tail[-2:-1]
    anchors = torch.cat([tail, extrapolated])  # (L - keep + 1, d)
    steps = torch.arange(tail.shape[0] * factor, device=pos.device)
    left = steps // factor
    frac = (steps % factor).to(pos.dtype).unsqueeze(1) / factor
    interpolated = (1 - frac) * anchors[left] + frac * anchors[left + 1]
    return torch.cat([pos[:keep], interpolated])


def causal_mask(length: int) -> torch.Tensor:
    """Additive causal mask as open_clip builds it (``-inf`` above the diagonal)."""
    return torch.full((length, length), float("-inf")).triu_(1)


class LongPositionsCLIP(CLIP):
    """open_clip's ``CLIP`` holding Long-CLIP's two position tables, read as one by every method.

    Why a subclass: open_clip's ``encode_text`` adds ``self.positional_embedding``; with the two
    tables held as separate tensors, that attribute would be the frozen table only, and anyone
    calling open_clip's own methods (a metric, a user, an exporter) would silently get the
    positions from before fine-tuning. Here the attribute is computed: rows < ``keep_positions``
    from the frozen buffer (stored under ``positional_embedding``, so no optimizer can move it,
    weight decay included), the rest from the trainable ``positional_embedding_res``. Nothing else
    differs from ``CLIP``.
    """

    keep_positions: int = KEEP_POSITIONS

    @property
    def positional_embedding(self) -> torch.Tensor:
        keep = self.keep_positions
        return torch.cat([self.frozen_positions[:keep], getattr(self, RES_KEY)[keep:]])

    @property
    def frozen_positions(self) -> torch.Tensor:
        """The frozen table (Long-CLIP's ``positional_embedding`` in the state dict)."""
        return self._buffers["positional_embedding"]


def extend_text_context(
    clip: nn.Module, keep: int = KEEP_POSITIONS, factor: int = 4, scheme: PositionScheme = "longclip"
) -> None:
    """Stretch an open_clip ``CLIP``'s text positions in place (77 -> 248 by default).

    ``scheme='longclip'`` lays the stretched table out as Long-CLIP does (frozen buffer +
    trainable ``positional_embedding_res``) and makes ``clip`` a ``LongPositionsCLIP``, so that
    its own methods see the merged table; ``'single'`` keeps one trainable table. Either layout
    also loads a state dict written in the other one (see ``adapt_position_layout``).
    """
    if scheme not in ("longclip", "single"):
        raise ValueError(f"position_scheme must be 'longclip' or 'single', got {scheme!r}")
    if scheme == "longclip" and type(clip) is not CLIP:
        raise ValueError(f"position_scheme 'longclip' needs an open_clip CLIP, got {type(clip).__name__}; "
                         "use --model.position_scheme single")
    old = clip.positional_embedding
    new = stretch_positional_embedding(old.data, keep, factor).to(old.dtype)
    if scheme == "single":
        clip.positional_embedding = nn.Parameter(new, requires_grad=old.requires_grad)
    else:
        del clip.positional_embedding  # a buffer from now on: no optimizer can move it
        clip.register_buffer("positional_embedding", new)
        clip.positional_embedding_res = nn.Parameter(new.clone(), requires_grad=old.requires_grad)
        clip.__class__ = LongPositionsCLIP  # same object, same state; the attribute now merges the tables
    clip.keep_positions = keep
    clip.context_length = new.shape[0]
    clip.register_buffer("attn_mask", causal_mask(new.shape[0]).to(clip.attn_mask.device), persistent=False)
    clip.register_load_state_dict_pre_hook(_adapt_on_load)


def merged_positions(state: dict[str, torch.Tensor], keep: int, prefix: str = "") -> dict[str, torch.Tensor]:
    """``state`` with a two-table layout folded into one ``positional_embedding`` (frozen rows
    < keep, trainable rows >= keep): what plain open_clip loads. Single-table states pass as they are."""
    res = state.get(prefix + RES_KEY)
    if res is None:
        return state
    out = {k: v for k, v in state.items() if k != prefix + RES_KEY}
    out[prefix + "positional_embedding"] = torch.cat([state[prefix + "positional_embedding"][:keep], res[keep:]])
    return out


def adapt_position_layout(state: dict, clip: nn.Module, prefix: str = "") -> None:
    """Convert ``state`` in place to ``clip``'s position layout, keeping the text forward equal.

    Two tables -> one: merged (``merged_positions``). One table -> two: the table becomes both
    the frozen and the trainable copy (as after a fresh stretch). The 77-row tables of a
    not-yet-stretched checkpoint are left alone.
    """
    pos_key, res_key = prefix + "positional_embedding", prefix + RES_KEY
    if pos_key not in state or state[pos_key].shape[0] != clip.context_length:
        return
    wants_res = hasattr(clip, RES_KEY)
    if res_key in state and not wants_res:
        merged = merged_positions(state, clip.keep_positions, prefix)
        state.pop(res_key)
        state[pos_key] = merged[pos_key]
    elif res_key not in state and wants_res:
        state[res_key] = state[pos_key].clone()


def _adapt_on_load(module: nn.Module, state: dict, prefix: str, *args) -> None:
    adapt_position_layout(state, module, prefix)
