"""Zero-shot classification sets: CIFAR-10/100 python pickles and image folders."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np

from mulclip_pl.data.records import DataError, LabeledImage, require_root

CIFAR = {
    10: ("cifar-10-batches-py", "test_batch", "labels", "batches.meta", "label_names"),
    100: ("cifar-100-python", "test", "fine_labels", "meta", "fine_label_names"),
}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".JPEG"}


def read_cifar(root: str | Path, num_classes: int) -> tuple[list[LabeledImage], list[str]]:
    """CIFAR test images (in memory, HWC uint8) and readable class names."""
    folder, batch, label_key, meta, names_key = CIFAR[num_classes]
    base = require_root(root, f"CIFAR-{num_classes}", f"{folder}/{batch} (the python pickle release)")
    if (base / folder).is_dir():
        base = base / folder
    data, names = _unpickle(base / batch), _unpickle(base / meta)[names_key]
    pixels = np.asarray(data["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    items = [LabeledImage(id=str(i), image=None, label=int(y), pixels=pixels[i]) for i, y in enumerate(data[label_key])]
    return items, [n.replace("_", " ") for n in names]


def _unpickle(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"CIFAR file not found: {path}")
    with path.open("rb") as handle:
        raw = pickle.load(handle, encoding="bytes")
    return {k.decode() if isinstance(k, bytes) else k: _decode(v) for k, v in raw.items()}


def _decode(value):
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode() for v in value]
    return value


def read_image_folder(root: str | Path, class_names_file: str | Path | None = None) -> tuple[list[LabeledImage], list[str]]:
    """``ROOT/<class>/<image>``; optional JSON file {folder: readable name} (e.g. ImageNet wnids)."""
    root = require_root(root, "image folder", "ROOT/<class>/<image>")
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if not folders:
        raise DataError(f"image folder {root} has no class sub-folders")
    readable = {}
    if class_names_file:
        path = Path(class_names_file).expanduser()
        if not path.is_file():
            raise DataError(f"class-name file not found: {path}")
        readable = json.loads(path.read_text())
    items = [
        LabeledImage(id=f"{folder.name}/{image.name}", image=image, label=label)
        for label, folder in enumerate(folders)
        for image in sorted(folder.iterdir())
        if image.suffix in IMAGE_SUFFIXES
    ]
    return items, [readable.get(f.name, f.name.replace("_", " ")) for f in folders]
