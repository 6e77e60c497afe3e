"""DCI (Densely Captioned Images): ``ROOT/annotations/<name>.json`` + ``ROOT/photos/<image>``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from mulclip_pl.data.corpora._io import caption_or_report, has_fields, load_json
from mulclip_pl.data.records import ProblemLog, Record, require_root
from mulclip_pl.errors import DataError

LongCaptionRecipe = Literal["short_extra", "extra", "short_extra_masks"]
SPLIT_ALIASES = {"val": ("val", "valid", "validation"), "test": ("test",), "train": ("train",)}


def dci_long_caption(annotation: dict, recipe: LongCaptionRecipe = "short_extra") -> str:
    """The long caption built from image-level fields (one documented, configurable recipe).

    short_extra (default, as long-caption retrieval papers use): short caption + extra caption.
    extra: the extra caption alone. short_extra_masks: also appends every region caption.
    """
    parts = {"short_extra": ["short_caption", "extra_caption"], "extra": ["extra_caption"]}.get(
        recipe, ["short_caption", "extra_caption"]
    )
    text = " ".join(str(annotation.get(k) or "").strip() for k in parts)
    if recipe == "short_extra_masks":
        regions = annotation.get("mask_data") or {}
        values = regions.values() if isinstance(regions, dict) else regions
        text += " " + " ".join(str(m.get("caption") or "").strip() for m in values if isinstance(m, dict))
    return text


def read_dci(
    root: str | Path, split: str, problems: ProblemLog, recipe: LongCaptionRecipe = "short_extra"
) -> list[Record]:
    """DCI records; without ``splits.json`` every annotation belongs to the 'test' split."""
    root = require_root(root, "DCI", "annotations/*.json and photos/")
    ann_dir = root / "annotations"
    if not ann_dir.is_dir():
        raise DataError(f"DCI: folder {ann_dir} not found (expected annotations/ and photos/ under {root})")
    names = _split_names(root, split)
    records = []
    for path in sorted(ann_dir.glob("*.json")):
        if names is not None and path.name not in names and path.stem not in names:
            continue
        where = str(path)
        try:
            annotation = load_json(path, "DCI annotation")
        except DataError as exc:
            problems.report(where, f"invalid JSON: {exc}")
            continue
        if not has_fields(annotation, ("image", "short_caption", "extra_caption"), where, problems):
            continue
        caption = caption_or_report(dci_long_caption(annotation, recipe), where, problems)
        if caption:
            records.append(Record(
                id=path.stem, image=root / "photos" / annotation["image"], caption=caption,
                summary=str(annotation["short_caption"]).strip() or None,
            ))
    return records


def _split_names(root: Path, split: str) -> set[str] | None:
    splits_path = root / "splits.json"
    if not splits_path.is_file():
        if split != "test":
            raise DataError(f"DCI: no {splits_path}; without it the whole set is the 'test' split")
        return None
    splits = load_json(splits_path, "DCI splits")
    for key in SPLIT_ALIASES.get(split, (split,)):
        if key in splits:
            return set(splits[key])
    raise DataError(f"DCI: split {split!r} not in {splits_path} (has {sorted(splits)})")
