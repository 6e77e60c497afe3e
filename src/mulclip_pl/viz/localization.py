"""Does a sentence's map land on its object? The localisation figure, with a confidence interval.

``attention.object_shares`` gives, per object sentence, the share of its map inside the object's
box and the box's share of the view (``chance``: what a uniform map scores). Objects of one image
are not independent (one model, one picture), so the interval resamples whole images (a
percentile bootstrap over images, the statistic being the mean over all objects of the resample).
The figure that answers "better than chance?" is the paired difference map - chance, whose
interval is reported too.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from mulclip_pl.data.datasets import load_image
from mulclip_pl.data.text import SentenceSplitter
from mulclip_pl.tokenizer import LongTextTokenizer
from mulclip_pl.viz.attention import object_shares, relevance_maps


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.mean:.3f} [{self.low:.3f}, {self.high:.3f}]"


@dataclass(frozen=True)
class Localization:
    """One model's figure: in-box share of its SAP and cosine maps, chance, SAP minus chance, and the SAP
    mass two sentences of one image share (``overlap``: 1 = the same patches, 0 = disjoint)."""

    sap: Interval
    cosine: Interval
    chance: float
    sap_minus_chance: Interval
    objects: int
    images: int
    overlap: float


def bootstrap_mean(per_image: list[list[float]], samples: int = 2000, level: float = 0.95,
                   seed: int = 0) -> Interval:
    """Mean over all objects, with a percentile interval from resampling images (with replacement)."""
    rng = random.Random(seed)
    sums = [(sum(values), len(values)) for values in per_image if values]
    total, count = sum(s for s, _ in sums), sum(n for _, n in sums)
    means = []
    for _ in range(samples):
        drawn = [sums[rng.randrange(len(sums))] for _ in sums]
        means.append(sum(s for s, _ in drawn) / max(1, sum(n for _, n in drawn)))
    means.sort()
    tail = (1 - level) / 2
    return Interval(total / count, means[int(tail * samples)], means[min(samples - 1, int((1 - tail) * samples))])


def localization(module, records: list[dict], image_root: Path, samples: int = 2000) -> Localization:
    """The figure for ``module`` over SynthLong-style ``records`` (objects with their ``box``)."""
    splitter, tokenizer = SentenceSplitter(), LongTextTokenizer(module.backbone.context_length)
    explanations = (relevance_maps(module, load_image(image_root / r["image"], r["id"]), r["caption"], splitter,
                                   tokenizer) for r in records)
    shares = object_shares(explanations, [r["objects"] for r in records])
    chance = [image["chance"] for image in shares]
    gain = [[a - c for a, c in zip(image["sap"], image["chance"])] for image in shares]
    overlaps = [value for image in shares for value in image["overlap"]]
    return Localization(
        sap=bootstrap_mean([image["sap"] for image in shares], samples),
        cosine=bootstrap_mean([image["cosine"] for image in shares], samples),
        chance=sum(map(sum, chance)) / max(1, sum(map(len, chance))),
        sap_minus_chance=bootstrap_mean(gain, samples),
        objects=sum(map(len, chance)), images=len(records), overlap=sum(overlaps) / max(1, len(overlaps)))


def first_records(data_dir: Path, images: int, split: str = "test") -> list[dict]:
    """The first ``images`` records of a SynthLong split (2-6 objects each: 60 images hold ~240)."""
    lines = (Path(data_dir) / f"{split}.jsonl").read_text().splitlines()[:images]
    return [json.loads(line) for line in lines]


def markdown_table(figures: dict[str, Localization]) -> str:
    """One row per model: SAP and cosine in-box share, chance, SAP minus chance (95% intervals), overlap."""
    first = next(iter(figures.values()))
    rows = [f"| model ({first.objects} objects in {first.images} images) | SAP mass in box [95% CI] "
            "| cosine mass in box [95% CI] | chance (uniform map) | SAP minus chance [95% CI] | SAP overlap |",
            "|---|---:|---:|---:|---:|---:|"]
    rows += [f"| {name} | {f.sap} | {f.cosine} | {f.chance:.3f} | {f.sap_minus_chance} | {f.overlap:.3f} |"
             for name, f in figures.items()]
    return "\n".join(rows)
