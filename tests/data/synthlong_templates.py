"""Templates of SynthLong-style captions: every object word, attribute phrase and count replaced by
``_``, so that two data sets' wordings can be compared (test_synthlong_shifted.py, test_synthlong_web.py)."""

import json
import re
from collections import Counter

from mulclip_pl.data.synthlong.scenes import COLOURS, COLS, ROWS, SHAPES, SIZES, TEXTURE_PHRASES
from mulclip_pl.data.synthlong.shifted import (
    COLOUR_WORDS, NUMBER_WORDS, PLURALS, POSITION_WORDS, SIZE_WORDS, TEXTURE_WORDS,
)

# Every word or phrase that names an object or a count, in either domain: what a template leaves open.
TRAINING_ATTRIBUTE_WORDS = {*COLOURS, *SIZES, *TEXTURE_PHRASES.values(), *ROWS, *COLS, "center"}
SLOT_WORDS = {*SHAPES, *PLURALS.values(), *TRAINING_ATTRIBUTE_WORDS, *COLOUR_WORDS.values(), *SIZE_WORDS.values(),
              *TEXTURE_WORDS.values(), *POSITION_WORDS.values(), *NUMBER_WORDS}
SLOT = re.compile(r"\b(?:" + "|".join(map(re.escape, sorted(SLOT_WORDS, key=len, reverse=True))) + r"|\d+)\b")


def sentences(text):
    return re.split(r"(?<=\.)\s+", text.strip())


def words(text):
    return Counter(word.strip(".,;") for word in text.split())


def template(sentence):
    """A sentence with each object word, attribute phrase and count replaced by ``_``."""
    return re.sub(r"_(?:\s+_)+", "_", SLOT.sub("_", sentence))


def texts(path):
    """Every caption, summary and hard negative the generator wrote to ``path``."""
    for row in map(json.loads, path.read_text().splitlines()):
        yield from (row["caption"], row["summary"], row["negative"])
        for negatives in row.get("negatives", {}).values():
            yield from negatives
