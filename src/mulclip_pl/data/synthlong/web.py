"""Stage 1's stand-in for web pretraining: short alt-text captions over both domains of SynthLong.

A real long-caption fine-tune (DOCCI) starts from a CLIP pretrained on web alt text, whose words
and pictures already cover the test sets it is later scored on (Urban1K, DCI). Trained from
scratch on SynthLong's summaries only, the demo's stage 1 had never seen the cross-domain set's
words ("crimson", "north-west corner") nor its look, so every model scored chance there, whatever
its fine-tuning. This set plays the web instead:
- images: SynthLong scenes (2-6 objects), half drawn with SynthLong's look and half with the
  shifted set's (``synthlong_shifted.SHIFTED.look``);
- captions: one short phrase per image naming *every* object by its colour and shape plus one or
  two of size, texture and grid position (``alt_text``), objects with the same phrase counted
  ("two emerald squares"), some phrasings stating the total in digits or words (``ALT_TEMPLATES``),
  with SynthLong's words or the shifted set's, drawn independently of the look (so each word is
  grounded in both renderings, as synonyms are on the web). Each caption identifies its image:
  under 1% of a 1000-image test split's captions fit a second image (tests/data/test_synthlong_web.py).
What it never holds: a long caption, a second sentence, or any sentence template, opening or
summary of either domain (tests/data/test_synthlong_web.py checks the shifted set's against every
caption written). Stage 2 then fine-tunes on SynthLong's long captions only, so the shifted set's
long captions stay a cross-domain test. ``SynthLongWeb`` is its datamodule: train on the mixed
split, test on one domain's words and look (``test_domain``), for the short-caption sanity check.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict
from pathlib import Path

from mulclip_pl.data.corpora.datamodules import GenericCaptions
from mulclip_pl.data.synthlong import generator as synthlong
from mulclip_pl.data.synthlong.scenes import LOOK, TEXTURE_PHRASES, SceneObject, random_scene, render
from mulclip_pl.data.synthlong.shifted import (
    COLOUR_WORDS, PLURALS, POSITION_WORDS, SHIFTED, SIZE_WORDS, TEXTURE_WORDS,
)

TRAIN_PER_PAIR = 2  # alt-text images per SynthLong training pair: 12000 at SynthLong's 6000
LOOKS = {"synthlong": LOOK, "shifted": SHIFTED.look}
EXTRA_ATTRIBUTES = ("size", "texture", "position")  # what an object phrase adds to its colour and shape
ALT_TEMPLATES = (  # web-like phrasings; {objects} lists every object, {count} is a digit or a number word
    "{objects}", "A photo of {objects}.", "Clip art: {objects}.", "{objects} on a flat colour.",
    "Simple drawing of {objects}.", "Icon with {objects}", "{count} shapes: {objects}.",
    "Drawing with {count} items - {objects}", "Stock image, {count} objects: {objects}",
)
COUNT_WORDS = ("zero", "one", "two", "three", "four", "five", "six")
OBJECTS = (2, 6)  # fewest and most objects of an alt-text image (SynthLong's: 2-6)

def split_sizes() -> dict[str, int]:
    """'train' mixes both words and looks; each test split holds one domain's words *and* look.

    Sized from SynthLong's splits when called, so a run that shrinks SynthLong (tests, the
    fingerprint benchmark) shrinks this set too: 12000 / 1000 / 1000 / 1000 at the defaults."""
    return {"train": TRAIN_PER_PAIR * synthlong.SPLITS["train"], "val": synthlong.SPLITS["val"],
            "test_synthlong": synthlong.SPLITS["val"], "test_shifted": synthlong.SPLITS["val"]}


def words(domain: str, plural: bool = False):
    """The attribute words of one domain's vocabulary: (colour, size, texture suffix, position suffix)."""
    if domain == "shifted":
        return (COLOUR_WORDS.get, SIZE_WORDS.get, lambda t: f" that {'are' if plural else 'is'} {TEXTURE_WORDS[t]}",
                lambda o: f" at the {POSITION_WORDS[o.row, o.col]}")
    return (str, str, lambda t: f" with {TEXTURE_PHRASES[t]}", lambda o: f" in the {o.position}")


def extra_attributes(n_objects: int, rng: random.Random) -> tuple[str, ...]:
    """Which attributes besides colour and shape one object phrase names: two in scenes of up to
    three objects, one in larger ones, so that the caption identifies its image among a thousand
    and stays short (at most 60 tokens). Measured on the 1000-pair test splits: no caption fits a
    second image; with one extra attribute for every object, 6 and 10 do (tests/data/test_synthlong_web.py)."""
    return tuple(sorted(rng.sample(EXTRA_ATTRIBUTES, 2 if n_objects <= 3 else 1), key=EXTRA_ATTRIBUTES.index))


def object_phrase(obj: SceneObject, attributes: tuple[str, ...], domain: str, count: int = 1,
                  number: str = "word") -> str:
    """'a large red circle', 'an ivory cross that is hollow', or with ``count`` > 1 a plural counted
    in words or digits (``number``): 'two ivory crosses that are hollow', '3 red squares'."""
    colour, size, texture, position = words(domain, plural=count > 1)
    adjectives = [f(getattr(obj, a)) for a, f in (("size", size), ("colour", colour)) if a in (*attributes, "colour")]
    phrase = " ".join([*adjectives, PLURALS[obj.shape] if count > 1 else obj.shape])
    phrase += texture(obj.texture) if "texture" in attributes else ""
    phrase += position(obj) if "position" in attributes else ""
    if count > 1:
        return f"{COUNT_WORDS[count] if number == 'word' else count} {phrase}"
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def alt_text(objects: list[SceneObject], rng: random.Random, domain: str) -> tuple[str, list[list[str]]]:
    """A short caption naming *every* object of the scene by colour and shape plus one or two
    attributes, and which attributes it named of each object (the record's ``mentions``).

    Naming every object is what makes the caption identify its image: alt text that named one or
    two of six objects fitted many images of a batch, so the contrastive loss was mostly false
    negatives and stage 1 learned nothing (issue #45). Objects whose phrases are the same are
    counted ("two emerald squares"), and some templates state the number of objects, in digits or
    in words."""
    named = [extra_attributes(len(objects), rng) for _ in objects]
    number = rng.choice(("word", "digit"))
    groups: dict[tuple, list[int]] = {}
    for i, obj in enumerate(objects):  # objects at a named position are never grouped (one per cell)
        unique = i if "position" in named[i] else -1
        groups.setdefault((obj.shape, obj.colour, *((a, getattr(obj, a)) for a in named[i]), unique), []).append(i)
    phrases = [object_phrase(objects[ids[0]], named[ids[0]], domain, len(ids), number) for ids in groups.values()]
    listed = ", ".join(phrases[:-1]) + f" and {phrases[-1]}" if len(phrases) > 1 else phrases[0]
    count = COUNT_WORDS[len(objects)] if number == "word" else str(len(objects))
    text = rng.choice(ALT_TEMPLATES).format(objects=listed, count=count)
    return text[0].upper() + text[1:], [["shape", "colour", *n] for n in named]


def _example(out: Path, split: str, i: int, image_size: int, rng: random.Random) -> dict:
    look = (rng.choice(tuple(LOOKS)) if split in ("train", "val") else split.removeprefix("test_"))
    vocabulary = (rng.choice(tuple(LOOKS)) if split in ("train", "val") else look)
    objects = random_scene(rng, OBJECTS)
    name = f"images_web/{split}_{i:05d}.png"
    render(objects, image_size, rng, LOOKS[look]).save(out / name)
    text, mentions = alt_text(objects, rng, vocabulary)
    return {"id": f"web_{split}_{i:05d}", "image": name, "caption": text, "summary": text, "look": look,
            "vocabulary": vocabulary, "objects": [asdict(o) for o in objects], "mentions": mentions}


def generate(out_dir: str | Path, image_size: int = 64, seed: int = 0, sizes: dict[str, int] | None = None) -> Path:
    """Write ``out_dir/web_{split}.jsonl`` and ``out_dir/images_web/``; its random streams are its
    own (not SynthLong's). Every name starts with ``web``, so SynthLong may share the folder."""
    out, sizes = Path(out_dir), sizes or split_sizes()
    (out / "images_web").mkdir(parents=True, exist_ok=True)
    for split, count in sizes.items():
        rng = random.Random(f"web/{seed}/{split}")
        rows = [_example(out, split, i, image_size, rng) for i in range(count)]
        (out / f"web_{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (out / "WEB_DONE").write_text(json.dumps(_settings(image_size, seed, sizes)))
    return out


def _settings(image_size: int, seed: int, sizes: dict[str, int]) -> dict:
    return {"image_size": image_size, "seed": seed, "sizes": sizes, "version": 2}


def ensure_generated(out_dir: str | Path, image_size: int = 64, seed: int = 0) -> Path:
    marker = Path(out_dir) / "WEB_DONE"
    if marker.is_file() and json.loads(marker.read_text()) == _settings(image_size, seed, split_sizes()):
        return Path(out_dir)
    return generate(out_dir, image_size, seed)


class SynthLongWeb(GenericCaptions):
    """Stage 1's alt-text set (module docstring): train on both domains' words and looks; ``test``
    scores short-caption retrieval in one domain (``test_domain``).

    Args:
        root: where the set is generated on first use (and found again while the settings match).
        image_px: side of the generated square images.
        generation_seed: seed of the scenes and captions.
        test_domain: 'synthlong' or 'shifted': whose words and look the test split uses.
    """

    default_name = "web"

    def __init__(self, root: str = "data/synthlong_web", image_px: int = 64, generation_seed: int = 0,
                 test_domain: str = "synthlong", **kwargs) -> None:
        if test_domain not in LOOKS:
            raise ValueError(f"data.test_domain must be one of {sorted(LOOKS)}, got {test_domain!r}")
        base = Path(root)
        kwargs["name"] = kwargs.get("name") or f"web_{test_domain}"  # the CLI may pass None
        super().__init__(train_file=str(base / "web_train.jsonl"), val_file=str(base / "web_val.jsonl"),
                         test_file=str(base / f"web_test_{test_domain}.jsonl"), **kwargs)
        self.root, self.image_px, self.generation_seed, self.test_domain = base, image_px, generation_seed, test_domain

    def prepare_data(self) -> None:
        ensure_generated(self.root, self.image_px, self.generation_seed)

    def setup(self, stage: str | None = None) -> None:
        ensure_generated(self.root, self.image_px, self.generation_seed)  # also outside a Trainer
        super().setup(stage)
