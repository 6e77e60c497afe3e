"""SynthLong's scenes: objects on a 3x3 grid, how they are drawn, and how they are described.

Each image holds 2-6 objects; each object has a shape, colour, size, texture and grid position.
The long caption has one detailed sentence per object, long enough that a 77-token model loses
the later ones; the summary names the objects without attributes. ``generator.py`` writes the
data set, ``negatives.py`` its hard negatives. How scenes are worded and drawn is a
``Domain``: ``ORIGINAL`` here, the cross-domain test set's in ``shifted.py``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace

from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = {
    "red": (220, 40, 40), "green": (40, 180, 60), "blue": (50, 80, 230), "yellow": (235, 220, 50),
    "purple": (150, 60, 200), "orange": (245, 140, 30), "white": (245, 245, 245), "cyan": (40, 210, 220),
}
SIZES = {"small": 0.28, "large": 0.45}  # radius as a fraction of the grid cell
TEXTURES = ("solid", "striped", "outlined")
TEXTURE_PHRASES = {"solid": "a solid fill", "striped": "horizontal stripes", "outlined": "only its outline drawn"}
ROWS, COLS = ("top", "middle", "bottom"), ("left", "center", "right")
ATTRIBUTES = ("shape", "colour", "size", "texture", "position")


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: str
    texture: str
    row: int
    col: int

    @property
    def position(self) -> str:
        return "center" if (self.row, self.col) == (1, 1) else f"{ROWS[self.row]} {COLS[self.col]}"

    def box(self, image_size: int, radii: dict[str, float] = SIZES) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) pixel box of the object (``radii``: radius per size, as a fraction of the cell)."""
        cell = image_size / 3
        cx, cy, r = (self.col + 0.5) * cell, (self.row + 0.5) * cell, radii[self.size] * cell
        return round(cx - r), round(cy - r), round(cx + r), round(cy + r)


def describe(obj: SceneObject, variant: int) -> str:
    """One detailed sentence about one object (several phrasings, all naming every attribute)."""
    texture = TEXTURE_PHRASES[obj.texture]
    templates = (
        f"In the {obj.position} of the picture there is a {obj.size} {obj.colour} {obj.shape} with {texture}.",
        f"A {obj.size} {obj.colour} {obj.shape} with {texture} can be seen in the {obj.position} of the image.",
        f"The {obj.position} part of the scene shows a {obj.size} {obj.shape}, coloured {obj.colour}, with {texture}.",
    )
    return templates[variant % len(templates)]


def summary(objects: list[SceneObject]) -> str:
    names = [f"a {o.shape}" for o in objects]
    listed = ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else names[0]
    return f"A picture of {listed}."


def caption(objects: list[SceneObject], variants: list[int], stated_count: int | None = None) -> str:
    """The long caption: an intro stating the number of objects (``stated_count``, default the
    true one), then one sentence per object in list order."""
    count = len(objects) if stated_count is None else stated_count
    intro = f"This synthetic scene shows {count} objects on a plain grey background."
    return " ".join([intro, *(describe(o, v) for o, v in zip(objects, variants))])


def random_scene(rng: random.Random, objects: tuple[int, int] = (2, 6)) -> list[SceneObject]:
    """A scene of ``objects`` (fewest, most) objects in distinct grid cells, all attributes at random."""
    cells = rng.sample([(r, c) for r in range(3) for c in range(3)], rng.randint(*objects))
    return [
        SceneObject(rng.choice(SHAPES), rng.choice(list(COLOURS)), rng.choice(list(SIZES)), rng.choice(TEXTURES), r, c)
        for r, c in cells
    ]


def perturb(objects: list[SceneObject], rng: random.Random) -> list[SceneObject]:
    """Change exactly one attribute of one object (a hard negative)."""
    index, attribute = rng.randrange(len(objects)), rng.choice(ATTRIBUTES)
    obj = objects[index]
    if attribute == "position":
        free = [(r, c) for r in range(3) for c in range(3) if all((o.row, o.col) != (r, c) for o in objects)]
        row, col = rng.choice(free)
        new = replace(obj, row=row, col=col)
    else:
        choices = {"shape": SHAPES, "colour": tuple(COLOURS), "size": tuple(SIZES), "texture": TEXTURES}[attribute]
        new = replace(obj, **{attribute: rng.choice([c for c in choices if c != getattr(obj, attribute)])})
    return [new if i == index else o for i, o in enumerate(objects)]


@dataclass(frozen=True)
class Look:
    """How a scene is drawn: colours, object sizes, line width and background."""

    palette: dict[str, tuple[int, int, int]]
    radii: dict[str, float]  # radius per size, as a fraction of the grid cell
    line_divisor: int  # outlines are image_size // line_divisor pixels wide (at least 1)
    stripe_divisor: int  # and stripes image_size // stripe_divisor
    background: Callable[[int, random.Random], Image.Image]


def grey_background(image_size: int, rng: random.Random) -> Image.Image:
    grey = rng.randint(90, 130)
    return Image.new("RGB", (image_size, image_size), (grey, grey, grey))


LOOK = Look(COLOURS, SIZES, 40, 40, grey_background)


def render(objects: list[SceneObject], image_size: int, rng: random.Random, look: Look = LOOK) -> Image.Image:
    image = look.background(image_size, rng)
    draw = ImageDraw.Draw(image)
    for obj in objects:
        _draw_object(draw, obj, image_size, look)
    return image


def _draw_object(draw: ImageDraw.ImageDraw, obj: SceneObject, image_size: int, look: Look) -> None:
    x0, y0, x1, y1 = obj.box(image_size, look.radii)
    colour = look.palette[obj.colour]
    fill = None if obj.texture == "outlined" else colour
    width = max(1, image_size // look.line_divisor)
    if obj.shape == "circle":
        draw.ellipse((x0, y0, x1, y1), fill=fill, outline=colour, width=width)
    elif obj.shape == "square":
        draw.rectangle((x0, y0, x1, y1), fill=fill, outline=colour, width=width)
    elif obj.shape == "triangle":
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=fill, outline=colour, width=width)
    else:
        third = (x1 - x0) / 3
        for box in ((x0 + third, y0, x1 - third, y1), (x0, y0 + third, x1, y1 - third)):
            draw.rectangle(box, fill=fill, outline=colour, width=width)
    if obj.texture == "striped":
        step = max(2, (y1 - y0) // 4)
        for y in range(y0 + step // 2, y1, step):
            draw.line((x0, y, x1, y), fill=(30, 30, 30), width=max(1, image_size // look.stripe_divisor))


@dataclass(frozen=True)
class Domain:
    """One way to word and draw scenes: a data set's style, shared by its captions and hard negatives."""

    name: str
    caption: Callable[..., str]  # (objects, variants, stated_count=None) -> the long caption, in list order
    summary: Callable[[list[SceneObject]], str]
    arrange: Callable[[list[SceneObject], random.Random], list[SceneObject]]  # the order sentences follow
    look: Look


def shuffled(objects: list[SceneObject], rng: random.Random) -> list[SceneObject]:
    rng.shuffle(objects)
    return objects


ORIGINAL = Domain("synthlong", caption, summary, shuffled, LOOK)
