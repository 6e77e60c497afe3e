"""COCO / Flickr30K Karpathy splits: ``dataset_coco.json`` / ``dataset_flickr30k.json``."""

from __future__ import annotations

from pathlib import Path

from mulclip_pl.data.corpora._io import has_fields, load_json
from mulclip_pl.data.records import ProblemLog, Record
from mulclip_pl.data.text import clean_caption
from mulclip_pl.errors import DataError

SPLITS = {"train": ("train", "restval"), "val": ("val",), "test": ("test",)}


def read_karpathy(json_file: str | Path, image_root: str | Path, split: str, problems: ProblemLog) -> list[Record]:
    """One record per image with all its captions (``Record.captions``, ~5 each)."""
    if split not in SPLITS:
        raise DataError(f"Karpathy split must be one of {sorted(SPLITS)}, got {split!r}")
    path = Path(json_file).expanduser()
    data = load_json(path, "Karpathy split file")
    if not isinstance(data, dict) or "images" not in data:
        raise DataError(f"{path}: expected an object with an 'images' list (dataset_coco.json format)")
    records = []
    for position, image in enumerate(data["images"]):
        where = f"{path.name}:images[{position}]"
        if not has_fields(image, ("filename", "split", "sentences"), where, problems):
            continue
        if image["split"] not in SPLITS[split]:
            continue
        captions = [clean_caption(s.get("raw", "")) for s in image["sentences"] if isinstance(s, dict)]
        captions = [c for c in captions if c]
        if not captions:
            problems.report(where, "empty caption: no non-empty sentence")
            continue
        relative = Path(image.get("filepath", "")) / image["filename"]
        records.append(Record(
            id=str(image.get("imgid", image.get("cocoid", position))), image=Path(image_root).expanduser() / relative,
            caption=captions[0], extra_captions=tuple(captions[1:]),
        ))
    return records
