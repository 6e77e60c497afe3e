"""ShareGPT4V (Long-CLIP's training json): records with ``image`` and ``conversations``."""

from __future__ import annotations

from pathlib import Path

from mulclip_pl.data.corpora._io import caption_or_report, has_fields, load_json
from mulclip_pl.data.records import ProblemLog, Record
from mulclip_pl.errors import DataError


def parse_slice(text: str) -> slice:
    """'0:1000' -> slice(0, 1000); '1000:' -> slice(1000, None)."""
    try:
        start, stop = (int(p) if p.strip() else None for p in text.split(":"))
    except ValueError as exc:
        raise DataError(f"ShareGPT4V: slice {text!r} is not of the form 'start:stop'") from exc
    return slice(start, stop)


def read_sharegpt4v(
    json_file: str | Path, image_root: str | Path, index_slice: str, problems: ProblemLog
) -> list[Record]:
    """Records of one slice of the json list; the caption is the first 'gpt' turn."""
    path = Path(json_file).expanduser()
    items = load_json(path, "ShareGPT4V")
    if not isinstance(items, list):
        raise DataError(f"ShareGPT4V: {path} must hold a JSON list of records")
    selected = parse_slice(index_slice)
    records = []
    for position in range(*selected.indices(len(items))):
        item, where = items[position], f"{path.name}[{position}]"
        if not has_fields(item, ("image", "conversations"), where, problems):
            continue
        answer = next((t.get("value") for t in item["conversations"] if isinstance(t, dict) and t.get("from") == "gpt"), None)
        caption = caption_or_report(answer, where, problems)
        if caption:
            records.append(Record(id=str(item.get("id", position)), image=Path(image_root).expanduser() / item["image"], caption=caption))
    return records
