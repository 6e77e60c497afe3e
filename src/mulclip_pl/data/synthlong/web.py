"""Stage 1's stand-in for web pretraining: short alt-text captions over both domains of SynthLong.

A real long-caption fine-tune (DOCCI) starts from a CLIP pretrained on web alt text, whose words
and pictures already cover the test sets it is later scored on (Urban1K, DCI). Trained from
scratch on SynthLong's summaries only, the demo's stage 1 had never seen the cross-domain set's
words ("crimson", "north-west corner") nor its look, so every model scored chance there, whatever
its fine-tuning. This set plays the web instead:
- images: SynthLong scenes (2-6 objects), half drawn with SynthLong's look and half with the
  shifted set's (``synthlong_shifted.SHIFTED.look``);
- captions: one short phrase per image naming one or two of its objects by their shape and one or
  two attributes each (colour, size, texture or grid position), in one of several web-like
  phrasings (``ALT_TEMPLATES``), with SynthLong's words or the shifted set's, drawn independently
  of the look (so each word is grounded in both renderings, as synonyms are on the web).
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
from mulclip_pl.data.synthlong.shifted import COLOUR_WORDS, POSITION_WORDS, SHIFTED, SIZE_WORDS, TEXTURE_WORDS

TRAIN_PER_PAIR = 6  # alt-text images per SynthLong training pair: 12000 at SynthLong's 2000
LOOKS = {"synthlong": LOOK, "shifted": SHIFTED.look}
ATTRIBUTES = ("colour", "size", "texture", "position")
ALT_TEMPLATES = {  # web-like phrasings: {a}, {b} are object phrases ("an amber square in the top left")
    1: ("{a}", "A photo of {a}.", "Clip art: {a}.", "{a} on a flat colour.", "Simple drawing of {a}.",
        "Icon with {a}"),
    2: ("{a} and {b}", "A photo of {a} and {b}.", "{a}, {b}.", "Clip art: {a} next to {b}.",
        "Shapes: {a} plus {b}."),
}


def split_sizes() -> dict[str, int]:
    """'train' mixes both words and looks; each test split holds one domain's words *and* look.

    Sized from SynthLong's splits when called, so a run that shrinks SynthLong (tests, the
    fingerprint benchmark) shrinks this set too: 12000 / 1000 / 1000 / 1000 at the defaults."""
    return {"train": TRAIN_PER_PAIR * synthlong.SPLITS["train"], "val": synthlong.SPLITS["val"],
            "test_synthlong": synthlong.SPLITS["val"], "test_shifted": synthlong.SPLITS["val"]}


def words(domain: str):
    """The attribute words of one domain's vocabulary: (colour, size, texture suffix, position suffix)."""
    if domain == "shifted":
        return (COLOUR_WORDS.get, SIZE_WORDS.get, lambda t: f" that is {TEXTURE_WORDS[t]}",
                lambda o: f" at the {POSITION_WORDS[o.row, o.col]}")
    return (str, str, lambda t: f" with {TEXTURE_PHRASES[t]}", lambda o: f" in the {o.position}")


def object_phrase(obj: SceneObject, attributes: tuple[str, ...], domain: str) -> str:
    """'a large red circle', 'an ivory cross that is hollow', 'a square in the top left' ..."""
    colour, size, texture, position = words(domain)
    adjectives = [f(getattr(obj, a)) for a, f in (("size", size), ("colour", colour)) if a in attributes]
    phrase = " ".join([*adjectives, obj.shape])
    phrase += texture(obj.texture) if "texture" in attributes else ""
    phrase += position(obj) if "position" in attributes else ""
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def alt_text(objects: list[SceneObject], rng: random.Random, domain: str) -> str:
    """A short caption naming one or two of ``objects``, with one or two attributes each."""
    chosen = rng.sample(objects, rng.choice((1, 2)))
    phrases = [object_phrase(o, tuple(rng.sample(ATTRIBUTES, rng.choice((1, 2)))), domain) for o in chosen]
    text = rng.choice(ALT_TEMPLATES[len(chosen)]).format(a=phrases[0], b=phrases[-1])
    return text[0].upper() + text[1:]


def _example(out: Path, split: str, i: int, image_size: int, rng: random.Random) -> dict:
    look = (rng.choice(tuple(LOOKS)) if split in ("train", "val") else split.removeprefix("test_"))
    vocabulary = (rng.choice(tuple(LOOKS)) if split in ("train", "val") else look)
    objects = random_scene(rng)
    name = f"images_web/{split}_{i:05d}.png"
    render(objects, image_size, rng, LOOKS[look]).save(out / name)
    text = alt_text(objects, rng, vocabulary)
    return {"id": f"web_{split}_{i:05d}", "image": name, "caption": text, "summary": text, "look": look,
            "vocabulary": vocabulary, "objects": [asdict(o) for o in objects]}


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
    return {"image_size": image_size, "seed": seed, "sizes": sizes, "version": 1}


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
