"""DOCCI: ``ROOT/docci_descriptions.jsonlines`` + ``ROOT/images/<image_file>``."""

from __future__ import annotations

from pathlib import Path

from mulclip_pl.data.corpora._io import caption_or_report, has_fields, iter_jsonlines
from mulclip_pl.data.records import ProblemLog, Record, require_root
from mulclip_pl.errors import DataError

FIELDS = ("example_id", "split", "image_file", "description")


def read_docci(root: str | Path, split: str, problems: ProblemLog) -> list[Record]:
    """Records of one DOCCI split (train, test, qual_dev, qual_test)."""
    root = require_root(root, "DOCCI", "docci_descriptions.jsonlines and images/")
    path = root / "docci_descriptions.jsonlines"
    if not path.is_file():
        raise DataError(f"DOCCI: {path} not found; data.root must hold docci_descriptions.jsonlines")
    records = []
    for where, obj in iter_jsonlines(path, problems):
        if not has_fields(obj, FIELDS, where, problems) or obj["split"] != split:
            continue
        caption = caption_or_report(obj["description"], f"{where} ({obj['example_id']})", problems)
        if caption:
            records.append(Record(id=str(obj["example_id"]), image=root / "images" / obj["image_file"], caption=caption))
    return records
