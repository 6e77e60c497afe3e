"""Urban1K: ``ROOT/image/<k>.jpg`` paired by stem with ``ROOT/caption/<k>.txt``."""

from __future__ import annotations

from pathlib import Path

from mulclip_pl.data.corpora._io import caption_or_report
from mulclip_pl.data.records import ProblemLog, Record, require_root
from mulclip_pl.errors import DataError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


def read_urban1k(root: str | Path, split: str, problems: ProblemLog) -> list[Record]:
    """All Urban1K pairs (the set is evaluation-only; ``split`` must be 'test')."""
    if split != "test":
        raise DataError(f"Urban1K has only a test split (asked for {split!r})")
    root = require_root(root, "Urban1K", "image/<k>.jpg and caption/<k>.txt")
    image_dir, caption_dir = root / "image", root / "caption"
    for folder in (image_dir, caption_dir):
        if not folder.is_dir():
            raise DataError(f"Urban1K: folder {folder} not found (expected image/ and caption/ under {root})")
    images = {p.stem: p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    captions = {p.stem: p for p in caption_dir.glob("*.txt")}
    for stem in sorted(images.keys() - captions.keys()):
        problems.report(str(images[stem]), "missing field: no caption file for this image")
    for stem in sorted(captions.keys() - images.keys()):
        problems.report(str(captions[stem]), "missing image: no image file for this caption")
    records = []
    for stem in sorted(images.keys() & captions.keys(), key=_natural):
        caption = caption_or_report(captions[stem].read_text(encoding="utf-8"), str(captions[stem]), problems)
        if caption:
            records.append(Record(id=stem, image=images[stem], caption=caption))
    return records


def _natural(stem: str) -> tuple:
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)
