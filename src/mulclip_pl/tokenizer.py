"""open_clip's BPE tokenizer at Long-CLIP's 248-token context, counting or refusing what it has to cut.

A leaf: the data pipeline, the metrics and the model all tokenise through it, and it needs nothing of
theirs. The positions that make a 248-token context readable live in ``model/long_text.py``.
"""

from __future__ import annotations

import hashlib
import logging
from functools import lru_cache
from typing import Literal, Sequence

import torch

from mulclip_pl.errors import CaptionTooLongError

log = logging.getLogger(__name__)

CLIP_CONTEXT = 77  # CLIP's own text positions
LONG_CONTEXT = 248

OverflowPolicy = Literal["truncate", "error"]


class LongTextTokenizer:
    """open_clip's BPE tokenizer at a longer context, with an explicit overflow policy.

    open_clip silently truncates; for long captions that hides lost sentences, so this wrapper
    counts every truncation (``n_truncated``) or raises ``CaptionTooLongError`` on request. The
    first truncation is logged unless ``warn`` is off (the training loader counts them per epoch
    instead, since each loader worker would log its own first one).
    """

    def __init__(self, context_length: int = LONG_CONTEXT, overflow: OverflowPolicy = "truncate", warn: bool = True) -> None:
        from open_clip.tokenizer import SimpleTokenizer

        if overflow not in ("truncate", "error"):
            raise ValueError(f"overflow must be 'truncate' or 'error', got {overflow!r}")
        self.context_length = context_length
        self.overflow = overflow
        self._bpe = SimpleTokenizer(context_length=context_length)
        self.sot = self._bpe.sot_token_id
        self.eot = self._bpe.eot_token_id
        self.n_truncated = 0
        self.warn = warn

    def count_tokens(self, text: str) -> int:
        """Number of positions ``text`` needs, start and end tokens included."""
        return len(self._bpe.encode(text)) + 2

    def encode(self, text: str) -> list[int]:
        """BPE ids of ``text`` without start/end tokens and without truncation.

        BPE works word by word (after ftfy cleaning and lower-casing), so the ids of sentences
        that meet at whitespace concatenate to the ids of the whole text: a caption is encoded
        once, through its sentences (``data/caption_tokens.py``).
        """
        return self._bpe.encode(text)

    def wrap(self, ids: Sequence[int], text: str = "") -> list[int]:
        """Start token + ``ids`` + end token, cut to the context under the overflow policy."""
        wrapped = [self.sot, *ids, self.eot]
        return self._handle_overflow(text, wrapped) if len(wrapped) > self.context_length else wrapped

    def identity(self) -> dict:
        """What token ids depend on: prepared data records it, and is refused by a model that differs."""
        return {"tokenizer": "open_clip SimpleTokenizer", "vocab": _vocab_digest(), "clean": "lower",
                "context_length": self.context_length}

    def __call__(self, texts: str | Sequence[str]) -> torch.Tensor:
        """Texts -> (N, context_length) int64 token ids, zero padded, EOT last when truncated."""
        if isinstance(texts, str):
            texts = [texts]
        return pad_ids([self.wrap(self._bpe.encode(text), text) for text in texts], self.context_length)

    def _handle_overflow(self, text: str, ids: list[int]) -> list[int]:
        if self.overflow == "error":
            raise CaptionTooLongError(
                f"caption needs {len(ids)} tokens but the context is {self.context_length}: "
                f"{text[:80]!r}... Set overflow='truncate' (data.overflow) to cut it, or shorten it."
            )
        self.n_truncated += 1
        if self.n_truncated == 1 and self.warn:
            log.warning(
                "caption truncated from %d to %d tokens (further truncations are counted, not logged)",
                len(ids), self.context_length,
            )
        return ids[: self.context_length - 1] + [self.eot]


def pad_ids(rows: Sequence[Sequence[int]], context_length: int) -> torch.Tensor:
    """Wrapped id lists (each at most ``context_length`` long) -> (N, context_length) int64, zero padded."""
    out = torch.zeros(len(rows), context_length, dtype=torch.long)
    for row, ids in enumerate(rows):
        out[row, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
    return out


@lru_cache(maxsize=1)
def _vocab_digest() -> str:
    """Short hash of open_clip's BPE merges file: the vocabulary token ids index into."""
    from open_clip.tokenizer import default_bpe

    with open(default_bpe(), "rb") as handle:
        return hashlib.sha1(handle.read()).hexdigest()[:12]
