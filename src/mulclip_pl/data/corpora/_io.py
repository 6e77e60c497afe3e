"""Helpers shared by the readers: JSON files and required fields, with errors that name the place."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from mulclip_pl.data.records import ProblemLog
from mulclip_pl.data.text import clean_caption
from mulclip_pl.errors import DataError


def load_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise DataError(f"{what}: file not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{what}: {path} is not valid JSON ({exc})") from exc


def iter_jsonlines(path: Path, problems: ProblemLog) -> Iterator[tuple[str, dict]]:
    """(location, object) for each non-empty line; malformed lines go to ``problems``."""
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{path.name}:{line_no}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.report(where, f"invalid JSON: {exc}")
                continue
            yield where, obj


def has_fields(obj: Any, fields: tuple[str, ...], where: str, problems: ProblemLog) -> bool:
    """True if ``obj`` is a dict with all ``fields``; otherwise the record is reported."""
    missing = [f for f in fields if not isinstance(obj, dict) or f not in obj or obj[f] is None]
    if missing:
        problems.report(where, f"missing field: {missing}")
    return not missing


def caption_or_report(text: Any, where: str, problems: ProblemLog) -> str | None:
    """A cleaned non-empty caption, or None after reporting an empty one."""
    caption = clean_caption(text) if isinstance(text, str) else ""
    if not caption:
        problems.report(where, "empty caption")
        return None
    return caption
