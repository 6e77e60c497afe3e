"""SynthLong's hard negatives, by kind: captions made wrong in one controlled way.

Each is built from the scene, so it is truly wrong for the image (not merely reworded):
- ``colour`` / ``shape`` / ``size``: one object's attribute changed;
- ``binding``: two objects exchange the value of one attribute (every word still occurs in the
  true caption: only which object it belongs to changes);
- ``position``: two objects exchange their grid positions;
- ``count``: the stated number of objects is wrong;
- ``absent``: one more sentence describes an object that is not in the image.
``mixed``: 10 distinct negatives of random kinds, for top-1 among 1 positive + N negatives
(N = 1, 5, 10: the first N), FG-OVD's way of grading difficulty. ``describe`` is the data set's
caption function (``scenes.caption``, or the cross-domain set's), so negatives are worded
like their positives.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace

from mulclip_pl.data.synthlong.scenes import COLOURS, SHAPES, SIZES, TEXTURES, SceneObject, caption

KINDS = ("colour", "shape", "size", "binding", "position", "count", "absent")
MIXED_SIZES = (1, 5, 10)
_VALUES = {"colour": tuple(COLOURS), "shape": SHAPES, "size": tuple(SIZES), "texture": TEXTURES}
Describe = Callable[..., str]  # (objects, variants, stated_count=None) -> caption


def negative(kind: str, objects: list[SceneObject], variants: list[int], rng: random.Random,
             describe: Describe = caption) -> str:
    """One caption of ``kind`` that contradicts the scene ``objects`` (described with ``variants``).

    A swap between two identical objects would leave the caption true: such draws are retried,
    and a scene where no draw can differ (all objects alike) gets a colour change instead.
    """
    truth = describe(objects, variants)
    for _ in range(20):
        text = _draw(kind, objects, variants, rng, describe)
        if text != truth:
            return text
    return _draw("colour", objects, variants, rng, describe)


def _draw(kind: str, objects: list[SceneObject], variants: list[int], rng: random.Random, describe: Describe) -> str:
    if kind in ("colour", "shape", "size"):
        index = rng.randrange(len(objects))
        obj = objects[index]
        new = replace(obj, **{kind: rng.choice([v for v in _VALUES[kind] if v != getattr(obj, kind)])})
        return describe(_replaced(objects, {index: new}), variants)
    if kind == "binding":
        return describe(_swap_attribute(objects, rng), variants)
    if kind == "position":
        i, j = rng.sample(range(len(objects)), 2)
        a, b = objects[i], objects[j]
        return describe(_replaced(objects, {i: replace(a, row=b.row, col=b.col), j: replace(b, row=a.row, col=a.col)}),
                       variants)
    if kind == "count":
        wrong = rng.choice([n for n in range(max(2, len(objects) - 2), len(objects) + 3) if n != len(objects)])
        return describe(objects, variants, stated_count=wrong)
    if kind == "absent":
        free = [(r, c) for r in range(3) for c in range(3) if all((o.row, o.col) != (r, c) for o in objects)]
        row, col = rng.choice(free)
        ghost = SceneObject(rng.choice(SHAPES), rng.choice(list(COLOURS)), rng.choice(list(SIZES)),
                            rng.choice(TEXTURES), row, col)
        at = rng.randint(0, len(objects))
        return describe(objects[:at] + [ghost] + objects[at:], variants[:at] + [rng.randrange(3)] + variants[at:],
                       stated_count=len(objects))
    raise ValueError(f"unknown hard-negative kind {kind!r}; known: {KINDS}")


def negatives_by_kind(objects: list[SceneObject], variants: list[int], rng: random.Random,
                      describe: Describe = caption) -> dict[str, list[str]]:
    """One negative of every kind, and ``mixed``: 10 distinct negatives of random kinds."""
    out = {kind: [negative(kind, objects, variants, rng, describe)] for kind in KINDS}
    truth, mixed = describe(objects, variants), []
    while len(mixed) < MIXED_SIZES[-1]:
        candidate = negative(rng.choice(KINDS), objects, variants, rng, describe)
        if candidate != truth and candidate not in mixed:
            mixed.append(candidate)
    out["mixed"] = mixed
    return out


def _replaced(objects: list[SceneObject], changes: dict[int, SceneObject]) -> list[SceneObject]:
    return [changes.get(i, o) for i, o in enumerate(objects)]


def _swap_attribute(objects: list[SceneObject], rng: random.Random) -> list[SceneObject]:
    """Two objects that differ in an attribute exchange its values (the caption's words stay the same)."""
    pairs = [(attribute, i, j) for attribute in _VALUES for i in range(len(objects)) for j in range(i + 1, len(objects))
             if getattr(objects[i], attribute) != getattr(objects[j], attribute)]
    if not pairs:  # all objects alike: nothing to exchange (``negative`` then falls back)
        return objects
    attribute, i, j = rng.choice(pairs)
    a, b = objects[i], objects[j]
    return _replaced(objects, {i: replace(a, **{attribute: getattr(b, attribute)}),
                               j: replace(b, **{attribute: getattr(a, attribute)})})
