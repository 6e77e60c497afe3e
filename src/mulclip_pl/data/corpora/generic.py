"""Users' own data: ``jsonl`` or ``csv`` with ``image``, ``caption`` and optional ``summary``, ``id``,
``negative`` (hard negatives of the caption: one string, or in jsonl a list of strings).

Read with the standard library rather than HF ``datasets``, so that a bad row is reported with
its line number; image paths are relative to the file's folder unless ``image_root`` is given.
"""

from __future__ import annotations

import csv
from pathlib import Path

from mulclip_pl.data.corpora._io import caption_or_report, has_fields, iter_jsonlines
from mulclip_pl.data.records import ProblemLog, Record
from mulclip_pl.errors import DataError


def read_generic(path: str | Path, problems: ProblemLog, image_root: str | Path | None = None) -> list[Record]:
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"caption file not found: {path} (expected a .jsonl or .csv with image, caption columns)")
    base = Path(image_root).expanduser() if image_root else path.parent
    rows = _rows(path, problems)
    records = []
    for where, row in rows:
        if not has_fields(row, ("image", "caption"), where, problems):
            continue
        caption = caption_or_report(row["caption"], where, problems)
        if caption:
            records.append(Record(
                id=str(row.get("id") or where), image=base / row["image"], caption=caption,
                summary=(row.get("summary") or None), negatives=_negatives(row.get("negative")),
            ))
    return records


def _rows(path: Path, problems: ProblemLog):
    if path.suffix in (".jsonl", ".jsonlines", ".json"):
        return iter_jsonlines(path, problems)  # lazily, so problems are reported in file order
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            return [(f"{path.name}:{n}", row) for n, row in enumerate(csv.DictReader(handle), 2)]
    raise DataError(f"{path}: unsupported caption file type {path.suffix!r} (use .jsonl or .csv)")


def _negatives(value) -> tuple[str, ...]:
    if not value:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)
