"""Caption text: cleaning, sentence splitting (spaCy), summaries and subcaption selection."""

from __future__ import annotations

import random
import re
from functools import cached_property
from typing import Literal

SummarySource = Literal["dataset", "first_sentence"]
SentenceSelection = Literal["random", "first"]

_PARAGRAPH = re.compile(r"\n\s*\n")
_SPACE = re.compile(r"\s+")


def clean_caption(text: str) -> str:
    """Collapse whitespace (newlines included) and strip; keeps the words untouched."""
    return _SPACE.sub(" ", text).strip()


class SentenceSplitter:
    """spaCy sentence splitter that works offline.

    Uses a trained pipeline when ``spacy_model`` names an installed one, else a blank English
    pipeline with the rule-based sentencizer (spaCy's tokenizer keeps abbreviations such as
    "Dr." and decimals such as "3.5" in one token, so they do not end sentences). A blank line
    always ends a sentence; a single newline is whitespace (captions are often hard-wrapped).
    """

    def __init__(self, spacy_model: str | None = None) -> None:
        self.spacy_model = spacy_model

    @cached_property
    def nlp(self):
        import spacy

        if self.spacy_model:
            try:
                return spacy.load(self.spacy_model, disable=["ner", "lemmatizer", "textcat"])
            except OSError as exc:
                raise OSError(
                    f"spaCy pipeline {self.spacy_model!r} is not installed; install it or set "
                    "data.spacy_model: null for the offline rule-based sentencizer"
                ) from exc
        nlp = spacy.blank("en")
        nlp.add_pipe("sentencizer")
        return nlp

    def __call__(self, text: str) -> list[str]:
        sentences = []
        for paragraph in _PARAGRAPH.split(text):
            paragraph = clean_caption(paragraph)
            if paragraph:
                sentences.extend(s.text.strip() for s in self.nlp(paragraph).sents if s.text.strip())
        return sentences

    def __getstate__(self) -> dict:  # data loader workers rebuild the pipeline lazily
        return {"spacy_model": self.spacy_model}

    def __setstate__(self, state: dict) -> None:
        self.spacy_model = state["spacy_model"]


def summary_for(sentences: list[str], dataset_summary: str | None, source: SummarySource = "dataset") -> str:
    """The short caption: the data set's own where it has one (and source='dataset'), else sentence 1."""
    if source == "dataset" and dataset_summary and dataset_summary.strip():
        return clean_caption(dataset_summary)
    return sentences[0]


def select_sentences(
    sentences: list[str], max_sentences: int, mode: SentenceSelection, rng: random.Random | None = None
) -> list[str]:
    """At most ``max_sentences`` subcaptions: the first M, or M at random (kept in caption order)."""
    if len(sentences) <= max_sentences or mode == "first":
        return sentences[:max_sentences]
    rng = rng or random
    chosen = sorted(rng.sample(range(len(sentences)), max_sentences))
    return [sentences[i] for i in chosen]
