"""SynthLong: a procedural long-caption data set that runs on a CPU in minutes.

Each image holds 2-6 objects on a 3x3 grid; each object has a shape, colour, size, texture and
grid position. The long caption has one detailed sentence per object (shuffled), long enough
that a 77-token model loses the later ones; the summary names the objects without attributes.
Evaluation records carry hard negatives: ``negative``, the caption with exactly one attribute of
one object changed, and ``negatives``, one per kind (negatives.py). Everything is
written in the generic jsonl format, so the real loaders read it; ``SynthLong`` (at the end) is
its datamodule, and scores every kind. ``SynthLongShifted`` is its cross-domain test set (the same
world of objects, worded and drawn otherwise: shifted.py).
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from mulclip_pl.data.base import EvalSet
from mulclip_pl.data.corpora.datamodules import GenericCaptions
from mulclip_pl.data.datasets import RetrievalDataset
from mulclip_pl.data.synthlong.negatives import KINDS, MIXED_SIZES, negatives_by_kind
from mulclip_pl.data.synthlong.scenes import ORIGINAL, Domain, perturb, random_scene, render
from mulclip_pl.data.synthlong.shifted import SHIFTED

# Held-out splits are large so that evaluation noise stays below seed-to-seed spread: hard-negative
# accuracy near 70% has a standard error of ~1 point on 2000 pairs (3.2 on 200).
# 6000 training pairs: stage 2 learns more from 3 epochs of them than from 10 of 2000 (docs/EXPERIMENTS.md).
SPLITS = {"train": 6000, "val": 1000, "test": 2000}
SHIFTED_SPLITS = {"test": 2000}  # the cross-domain set is for testing only: nothing is chosen on it
DOMAINS = {domain.name: domain for domain in (ORIGINAL, SHIFTED)}


def _sizes(domain: str) -> dict[str, int]:
    return SHIFTED_SPLITS if domain == SHIFTED.name else SPLITS


def generate(out_dir: str | Path, image_size: int = 64, seed: int = 0, sizes: dict[str, int] | None = None,
             domain: str = ORIGINAL.name) -> Path:
    """Write ``out_dir/{split}.jsonl`` and ``out_dir/images/``; returns ``out_dir``. Idempotent per seed.

    ``domain``: 'synthlong' or 'shifted' (the cross-domain set, whose scenes come from other streams)."""
    out, style = Path(out_dir), DOMAINS[domain]
    (out / "images").mkdir(parents=True, exist_ok=True)
    for split_index, (split, count) in enumerate((sizes or _sizes(domain)).items()):
        rng = random.Random(seed * 1000 + split_index if style is ORIGINAL else f"{domain}/{seed}/{split}")
        with (out / f"{split}.jsonl").open("w") as handle:
            for i in range(count):
                negatives_rng = random.Random(f"{seed}/{split}/{i}")  # its own stream: the scenes stay as they were
                handle.write(json.dumps(_example(out, split, i, image_size, rng, negatives_rng, style)) + "\n")
    (out / "DONE").write_text(json.dumps(_settings(image_size, seed, sizes or _sizes(domain), domain)))
    return out


def _settings(image_size: int, seed: int, sizes: dict[str, int], domain: str = ORIGINAL.name) -> dict:
    """What a generated copy depends on (``negatives``: the version of the hard-negative kinds)."""
    settings = {"image_size": image_size, "seed": seed, "sizes": sizes, "negatives": 2}
    return settings if domain == ORIGINAL.name else {**settings, "domain": domain}


def _example(out: Path, split: str, i: int, image_size: int, rng: random.Random,
             negatives_rng: random.Random, style: Domain = ORIGINAL) -> dict:
    objects = style.arrange(random_scene(rng), rng)  # in the order the caption describes them
    variants = [rng.randrange(3) for _ in objects]
    name = f"images/{split}_{i:05d}.png"
    render(objects, image_size, rng, style.look).save(out / name)
    record = {
        "id": f"{split}_{i:05d}", "image": name, "caption": style.caption(objects, variants),
        "summary": style.summary(objects), "negative": style.caption(perturb(objects, rng), variants),
        "objects": [{**asdict(o), "position": o.position, "box": o.box(image_size, style.look.radii)} for o in objects],
    }
    if split != "train":
        record["negatives"] = negatives_by_kind(objects, variants, negatives_rng, style.caption)
    return record


def ensure_generated(out_dir: str | Path, image_size: int = 64, seed: int = 0, domain: str = ORIGINAL.name) -> Path:
    """Generate once; reuse when the same settings were already written."""
    out = Path(out_dir)
    marker = out / "DONE"
    if marker.is_file():
        if json.loads(marker.read_text()) == _settings(image_size, seed, _sizes(domain), domain):
            return out
    return generate(out, image_size, seed, domain=domain)


class SynthLong(GenericCaptions):
    """The procedural demo set as an ordinary datamodule: generated into ``root`` on first use.

    ``mulclip-pl test`` / ``validate`` report, on the held-out split: ``synthlong`` (R@K and
    ``hard_negative_acc`` against one attribute change), one row per hard-negative kind
    (``synthlong_colour``, ``_binding``, ...: the positive against that kind's negative) and
    ``synthlong_top1_of_{2,6,11}`` (the positive against 1, 5 or 10 mixed negatives). Its
    cross-domain test set is ``SynthLongShifted`` (below).

    Args:
        root: where the data set is generated (and found again: generation is skipped when the
            same settings were already written there).
        image_px: side of the generated square images.
        generation_seed: seed of the scenes; another seed gives another data set.
        negative_kinds: also score every hard-negative kind (in the same pass over the images).
        mixed_negatives: also score top-1 among 1 positive and 1, 5 or 10 mixed negatives (10 more
            texts per image to encode, more than half of a test call's text work).
    """

    default_name = "synthlong"
    domain, splits = ORIGINAL.name, ("train", "val", "test")

    def __init__(self, root: str = "data/synthlong", image_px: int = 64, generation_seed: int = 0,
                 negative_kinds: bool = True, mixed_negatives: bool = True, **kwargs) -> None:
        root_path = Path(root)
        files = {split: str(root_path / f"{split}.jsonl") if split in self.splits else None
                 for split in ("train", "val", "test")}
        # Keywords spelled out: the CLI then knows these arguments are set here, not by the user.
        super().__init__(train_file=files["train"], val_file=files["val"], test_file=files["test"], **kwargs)
        self.root, self.image_px, self.generation_seed = root_path, image_px, generation_seed
        self.negative_kinds, self.mixed_negatives = negative_kinds, mixed_negatives

    def prepare_data(self) -> None:
        ensure_generated(self.root, self.image_px, self.generation_seed, self.domain)

    def setup(self, stage: str | None = None) -> None:
        ensure_generated(self.root, self.image_px, self.generation_seed, self.domain)  # also outside a Trainer
        super().setup(stage)

    def build_eval_sets(self, split):
        """One set whose records carry every view's negatives, scored in one pass (``ViewedEvalSet``).

        Each kind used to be its own set: eleven passes over the same images, each tokenising and
        encoding the positives again (most of a test call's time). Now each image is read, encoded
        and tokenised once, with its negatives in one row: the one-attribute ``negative`` first,
        then one per kind, then the 10 mixed ones (top-1 of N uses their first N)."""
        sets = super().build_eval_sets(split)
        if not sets or not self.negative_kinds:
            return sets
        records = sets[0].dataset.records
        by_id = {row["id"]: row["negatives"] for row in map(json.loads, Path(self.files[split]).read_text().splitlines())
                 if row.get("negatives")}
        mixed = 1 + len(KINDS)  # the first column of the mixed negatives
        rows = [(*r.negatives, *(by_id[r.id][kind][0] for kind in KINDS),
                 *(by_id[r.id]["mixed"] if self.mixed_negatives else ())) for r in records]
        views = {self.name: (0, 1), **{f"{self.name}_{kind}": (1 + k, 2 + k) for k, kind in enumerate(KINDS)}}
        if self.mixed_negatives:
            views.update({f"{self.name}_top1_of_{n + 1}": (mixed, mixed + n) for n in MIXED_SIZES})
        dataset = RetrievalDataset([replace(r, negatives=row) for r, row in zip(records, rows)],
                                   self.transform(train=False), self.tokenizer(warn=False), self._policy(split))
        return [ViewedEvalSet(self.name, "retrieval", dataset, hard_negatives=True, negative_views=views)]


@dataclass
class ViewedEvalSet(EvalSet):
    """A retrieval set whose records carry several views' hard negatives side by side.

    ``negative_views``: view name -> (start, stop) columns of the records' ``negatives``; the
    evaluator scores hard-negative accuracy of each view against those columns only, one row per
    view in the results (the first view, the set's own name, also gets R@K)."""

    negative_views: dict[str, tuple[int, int]] = field(default_factory=dict)


class SynthLongShifted(SynthLong):
    """SynthLong's cross-domain test set, the analogue of Urban1K / DCI for a DOCCI-trained model.

    The same world of objects with disjoint wording, reading-order sentences and shifted rendering
    (shifted.py); a test split of 2000 images only, generated into ``root`` on first use.
    ``mulclip-pl test --data SynthLongShifted`` reports ``synthlong_shifted`` (R@K and one-change
    ``hard_negative_acc``), ``synthlong_shifted_{colour,binding,...}`` and ``synthlong_shifted_top1_of_N``,
    the rows SynthLong has; ``configs/synthlong/test.yaml`` scores both sets in one call.

    Args:
        root: where the set is generated (and found again while the settings are the same).
        image_px: side of the generated square images (the trained model's SynthLong size).
        generation_seed: seed of the scenes (their streams differ from SynthLong's for any seed).
        negative_kinds: also score every hard-negative kind (in the same pass over the images).
        mixed_negatives: also score top-1 among 1 positive and 1, 5 or 10 mixed negatives.
    """

    default_name = "synthlong_shifted"
    domain, splits = SHIFTED.name, ("test",)

    def __init__(self, root: str = "data/synthlong_shifted", image_px: int = 64, generation_seed: int = 0,
                 negative_kinds: bool = True, mixed_negatives: bool = True, **kwargs) -> None:
        super().__init__(root, image_px, generation_seed, negative_kinds, mixed_negatives, **kwargs)
