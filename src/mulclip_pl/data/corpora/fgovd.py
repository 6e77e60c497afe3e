"""FG-OVD (Bianchi et al., CVPR 2024) as CLIP-style models are scored on it (FG-CLIP's jsonl files).

One file per difficulty split; one row per object box:
``{"img_path": "000000239627.jpg", "bbox": [x, y, w, h], "pos_expression": ["<caption>"],
"neg_expression": ["<caption>", ... 10]}``. ``img_path`` (a bare name, or ``val2017/<name>``) is
found under ``image_root``, which may be COCO's val2017 folder or the folder above it.
Hard / medium / easy negatives change 1 / 2 / 3 attributes of the positive; trivial ones are
captions of other objects. The official FG-OVD release (detection-style ``1_attributes.json``) is
a different format, read by detectors, not here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from PIL import ExifTags, Image

from mulclip_pl.data.corpora._io import has_fields, iter_jsonlines
from mulclip_pl.data.images import decoding_cause, is_decoding_error
from mulclip_pl.data.records import ProblemLog, require_root
from mulclip_pl.data.text import clean_caption
from mulclip_pl.errors import DataError

FGOVDSplit = Literal["hard", "medium", "easy", "trivial"]
# The names FG-CLIP's README (h_/m_/e_) and its evaluation scripts (1_/2_/3_) use, first match wins.
SPLIT_FILES: dict[str, tuple[str, ...]] = {
    "hard": ("h_attributes_llava.jsonl", "1_attributes_llava.jsonl"),
    "medium": ("m_attributes_llava.jsonl", "2_attributes_llava.jsonl"),
    "easy": ("e_attributes_llava.jsonl", "3_attributes_llava.jsonl"),
    "trivial": ("shuffle_negatives_llava.jsonl",),
}
NUM_NEGATIVES = 10
BOX_TOLERANCE = 1.0  # pixels a COCO box may overhang the image (float rounding in the annotations)


@dataclass(frozen=True)
class BoxRecord:
    """One object box with its positive caption and its negatives (evaluation only)."""

    id: str
    image: Path
    box: tuple[float, float, float, float]  # x, y, w, h in pixels of the original image
    image_size: tuple[int, int]  # width, height
    caption: str
    negatives: tuple[str, ...]


def split_file(root: str | Path, split: str) -> Path:
    """The jsonl file of ``split`` under ``root``; the error lists the names that were looked for."""
    if split not in SPLIT_FILES:
        raise DataError(f"FG-OVD has no split {split!r}; choose from {list(SPLIT_FILES)} (data.splits)")
    base = require_root(root, "FG-OVD", f"one of {SPLIT_FILES[split]} per split")
    for name in SPLIT_FILES[split]:
        if (base / name).is_file():
            return base / name
    raise DataError(f"FG-OVD {split}: none of {list(SPLIT_FILES[split])} in {base}. Put FG-CLIP's FG-OVD jsonl "
                    "files there (data.root), or leave the split out of data.splits.")


def read_fgovd(path: str | Path, image_root: str | Path, problems: ProblemLog,
               num_negatives: int = NUM_NEGATIVES) -> list[BoxRecord]:
    """Rows of one split file; bad rows (fields, negatives count, box, image) go to ``problems``."""
    path = Path(path)
    image_root = require_root(image_root, "FG-OVD images", "the COCO folder holding val2017/")
    sizes: dict[Path, tuple[int, int] | str] = {}
    records = []
    for where, row in iter_jsonlines(path, problems):
        if not has_fields(row, ("img_path", "bbox", "pos_expression", "neg_expression"), where, problems):
            continue
        positive = _captions(row["pos_expression"])
        negatives = _captions(row["neg_expression"])
        box = _box(row["bbox"])
        if positive is None or len(positive) != 1:
            problems.report(where, f"bad positive: expected 1 caption in pos_expression, got {row['pos_expression']!r}")
        elif negatives is None or len(negatives) != num_negatives:
            count = "not a list of captions" if negatives is None else len(negatives)
            problems.report(where, f"wrong number of negatives: expected {num_negatives}, got {count}")
        elif box is None:
            problems.report(where, f"bad box: expected [x, y, w, h] with w, h > 0, got {row['bbox']!r}")
        else:
            image = _resolve(image_root, str(row["img_path"]))
            size = sizes.setdefault(image, _image_size(image))
            if isinstance(size, str):
                problems.report(where, size)
            elif not _inside(box, size):
                problems.report(where, f"box outside image: {list(box)} in a {size[0]}x{size[1]} image {image}")
            else:
                records.append(BoxRecord(where, image, box, size, positive[0], tuple(negatives)))
    return records


def _captions(value) -> list[str] | None:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) and clean_caption(v) for v in values):
        return None
    return [clean_caption(v) for v in values]


def _box(value) -> tuple[float, float, float, float] | None:
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        return None
    try:
        x, y, w, h = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return (x, y, w, h) if w > 0 and h > 0 and all(map(math.isfinite, (x, y, w, h))) else None


def _resolve(image_root: Path, img_path: str) -> Path:
    """The first of ``image_root/img_path``, ``image_root/<name>``, ``image_root/val2017/<name>`` that
    exists (image_root may be val2017 or the COCO folder above it; img_path may carry val2017/)."""
    name = Path(img_path).name
    candidates = (image_root / img_path, image_root / name, image_root / "val2017" / name)
    return next((path for path in candidates if path.is_file()), candidates[0])


def _image_size(path: Path) -> tuple[int, int] | str:
    """(width, height) of the image as loaded (upright: EXIF orientation applied, as ``load_image``
    does and as boxes are drawn), from the file header; or the problem with the file."""
    if not path.is_file():
        return f"missing image: {path}"
    try:
        with Image.open(path) as image:
            width, height = image.size
            quarter_turn = image.getexif().get(ExifTags.Base.Orientation, 1) in (5, 6, 7, 8)
            return (height, width) if quarter_turn else (width, height)
    except Exception as exc:
        if not is_decoding_error(exc):
            raise
        return f"unreadable image: {path}: {decoding_cause(exc)}"


def _inside(box: tuple[float, float, float, float], size: tuple[int, int]) -> bool:
    x, y, w, h = box
    width, height = size
    return x >= -BOX_TOLERANCE and y >= -BOX_TOLERANCE and x + w <= width + BOX_TOLERANCE and y + h <= height + BOX_TOLERANCE
