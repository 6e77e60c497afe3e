"""SynthLong's cross-domain test set: the same world of objects, worded and drawn otherwise.

A model fine-tuned on DOCCI is scored on Urban1K and DCI, whose captions were written another
way about other images; SynthLong's own test split comes from the generator that wrote its
training data, so it only measures in-domain skill. This domain keeps the scene distribution
(shapes, colours, sizes, textures, 3x3 grid, 2-6 objects) and changes everything else:
- wording: other sentence templates; a synonym for every colour, size, texture and position
  (compass points); another opening sentence (the count in words) and summary (counted shapes);
- order: sentences follow the grid in reading order, not the order the objects were drawn in,
  and every hard negative is sorted the same way (its order gives nothing away);
- rendering: tinted gradient backdrops instead of plain grey, other shades of each colour,
  smaller objects, thicker outlines (2 px instead of 1 at 64 px) and thinner stripes at larger sizes.
tests/data/test_synthlong_shifted.py checks that no sentence template occurs in SynthLong's
training captions. ``SHIFTED`` is the ``Domain`` that ``generator.generate`` writes with.
"""

from __future__ import annotations

import random
from collections import Counter

from PIL import Image, ImageDraw

from mulclip_pl.data.synthlong.scenes import SHAPES, Domain, Look, SceneObject

COLOUR_WORDS = {"red": "crimson", "green": "emerald", "blue": "cobalt", "yellow": "golden", "purple": "violet",
                "orange": "amber", "white": "ivory", "cyan": "turquoise"}
SIZE_WORDS = {"small": "tiny", "large": "big"}
TEXTURE_WORDS = {"solid": "filled in", "striped": "banded horizontally", "outlined": "hollow"}
POSITION_WORDS = {(0, 0): "north-west corner", (0, 1): "north edge", (0, 2): "north-east corner",
                  (1, 0): "west edge", (1, 1): "centre", (1, 2): "east edge",
                  (2, 0): "south-west corner", (2, 1): "south edge", (2, 2): "south-east corner"}
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles", "cross": "crosses"}

PALETTE = {  # the same colour names, other shades
    "red": (180, 30, 60), "green": (70, 150, 30), "blue": (30, 110, 200), "yellow": (250, 200, 40),
    "purple": (120, 40, 160), "orange": (220, 110, 20), "white": (225, 225, 210), "cyan": (90, 220, 200),
}
RADII = {"small": 0.24, "large": 0.40}  # SynthLong: 0.28 and 0.45 of the grid cell
BACKDROPS = ((72, 88, 112), (112, 96, 72), (84, 110, 92), (110, 80, 96))  # slate, khaki, sage, mauve


def describe(obj: SceneObject, variant: int) -> str:
    """One sentence about one object, naming every attribute with the shifted vocabulary."""
    pos, colour = POSITION_WORDS[obj.row, obj.col], COLOUR_WORDS[obj.colour]
    size, texture = SIZE_WORDS[obj.size], TEXTURE_WORDS[obj.texture]
    templates = (
        f"Toward the {pos} sits a {size} {colour} {obj.shape}, {texture}.",
        f"Positioned at the {pos}, one {colour} {obj.shape} appears {size} and {texture}.",
        f"Someone placed a {obj.shape} at the {pos}; it looks {size}, {colour} and {texture}.",
    )
    return templates[variant % len(templates)]


def caption(objects: list[SceneObject], variants: list[int], stated_count: int | None = None) -> str:
    """An opening sentence stating the number of objects, then one sentence per object in reading
    order (top row first, left to right), whatever order ``objects`` come in."""
    count = len(objects) if stated_count is None else stated_count
    intro = f"Here {NUMBER_WORDS[count]} figures are arranged on a tinted backdrop."
    described = sorted(zip(objects, variants), key=lambda pair: (pair[0].row, pair[0].col))
    return " ".join([intro, *(describe(o, v) for o, v in described)])


def summary(objects: list[SceneObject]) -> str:
    counts = Counter(o.shape for o in objects)
    names = [f"{NUMBER_WORDS[n]} {PLURALS[s] if n > 1 else s}" for s in SHAPES if (n := counts[s])]
    listed = ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else names[0]
    return f"An arrangement featuring {listed}."


def reading_order(objects: list[SceneObject], rng: random.Random) -> list[SceneObject]:
    return sorted(objects, key=lambda o: (o.row, o.col))


def tinted_background(image_size: int, rng: random.Random) -> Image.Image:
    """A backdrop tinted away from grey, lighter at the top than at the bottom."""
    base = [c + rng.randint(-10, 10) for c in rng.choice(BACKDROPS)]
    image = Image.new("RGB", (image_size, image_size))
    draw = ImageDraw.Draw(image)
    for y in range(image_size):
        shade = round(24 * (0.5 - y / max(1, image_size - 1)))
        draw.line((0, y, image_size, y), fill=tuple(c + shade for c in base))
    return image


SHIFTED = Domain("shifted", caption, summary, reading_order, Look(PALETTE, RADII, 28, 64, tinted_background))
