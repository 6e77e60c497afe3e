"""A caption's token ids, computed once, and the training tensors made from them.

The raw path (``CaptionEncoder``) and prepared shards (``mulclip-pl prepare``) both go through
``tokenise_caption``; ``caption_tensors`` turns its ids into the batch fields, so both paths give
identical batches. Each sentence is BPE-encoded once and the long caption's ids are the sentences'
ids concatenated: BPE works word by word, and spaCy's sentence boundaries fall at whitespace or
between a punctuation mark and a word, where the tokenizer splits anyway. So the concatenation
equals tokenising the whole caption (tests/data/test_caption_tokens.py checks SynthLong and every
fixture caption against the plain tokenizer).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from mulclip_pl.data.text import SentenceSelection, SummarySource, clean_caption, select_sentences
from mulclip_pl.errors import CaptionTooLongError
from mulclip_pl.tokenizer import LongTextTokenizer, OverflowPolicy, pad_ids


@dataclass(frozen=True)
class TokenisedCaption:
    """Wrapped (start + ids + end, cut to the context) token ids of one caption's parts."""

    caption_ids: list[int]
    caption_tokens: int  # positions the whole caption needs; > context_length means it was truncated
    sentence_ids: list[list[int]]
    summary_ids: list[int]  # the data set's own summary; [] when it has none


def tokenise_caption(tokenizer: LongTextTokenizer, caption: str, sentences: list[str],
                     summary: str | None) -> TokenisedCaption:
    """BPE each sentence once; the caption is their concatenation (see the module docstring)."""
    pieces = [tokenizer.encode(sentence) for sentence in sentences]
    caption_bpe = [token for piece in pieces for token in piece]
    summary_ids = tokenizer.wrap(tokenizer.encode(clean_caption(summary)), summary) if summary and summary.strip() else []
    return TokenisedCaption(
        caption_ids=tokenizer.wrap(caption_bpe, caption),
        caption_tokens=len(caption_bpe) + 2,
        sentence_ids=[tokenizer.wrap(piece, sentence) for piece, sentence in zip(pieces, sentences)],
        summary_ids=summary_ids,
    )


@dataclass(frozen=True)
class CaptionFields:
    """Settings that turn a ``TokenisedCaption`` into training fields (the datamodule's)."""

    context_length: int
    max_sentences: int = 10
    selection: SentenceSelection = "random"
    summary_source: SummarySource = "dataset"
    overflow: OverflowPolicy = "truncate"

    def __call__(self, caption: TokenisedCaption, rng: random.Random | None = None, item: str = "") -> dict:
        """``long`` (L,), ``short`` (L,), ``sub`` (M, L), ``sub_mask`` (M,) and ``n_truncated`` (0 or 1)."""
        truncated = caption.caption_tokens > self.context_length
        if truncated and self.overflow == "error":
            raise CaptionTooLongError(f"{item}: caption needs {caption.caption_tokens} tokens but the context is "
                                      f"{self.context_length}. Set data.overflow='truncate' to cut it, or shorten it.")
        indices = select_sentences(list(range(len(caption.sentence_ids))), self.max_sentences, self.selection, rng)
        chosen = [caption.sentence_ids[i] for i in indices]
        use_dataset = self.summary_source == "dataset" and caption.summary_ids
        short = caption.summary_ids if use_dataset else caption.sentence_ids[0]
        long_short = pad_ids([caption.caption_ids, short], self.context_length)
        subs = pad_ids(chosen + [[]] * (self.max_sentences - len(chosen)), self.context_length)
        return {"long": long_short[0], "short": long_short[1], "sub": subs,
                "sub_mask": torch.arange(self.max_sentences) < len(chosen), "n_truncated": int(truncated),
                "sub_span": self._spans(caption, indices)}

    def _spans(self, caption: TokenisedCaption, indices: list[int]) -> torch.Tensor:
        """(M, 2) [start, end) of each chosen sentence's words inside ``long`` (the caption is its
        sentences' ids in order, after the start token); empty where truncation cut the sentence off."""
        lengths = torch.tensor([len(ids) - 2 for ids in caption.sentence_ids])
        starts = 1 + torch.cumsum(lengths, 0) - lengths
        spans = torch.zeros(self.max_sentences, 2, dtype=torch.long)
        last_word = min(len(caption.caption_ids), self.context_length) - 1  # the end token's position
        chosen = torch.tensor(indices, dtype=torch.long)
        spans[: len(indices), 0] = starts[chosen].clamp(max=last_word)
        spans[: len(indices), 1] = (starts[chosen] + lengths[chosen]).clamp(max=last_word)
        return spans

