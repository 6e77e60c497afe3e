"""Zero-shot classification sets: CIFAR-10/100 python pickles, image folders and the ImageNet family.

ImageNet class indices follow the sorted WordNet ids (wnids) that timm ships
(``timm/data/_info/imagenet_synsets.txt``); readable names and prompts are open_clip's
(``IMAGENET_CLASSNAMES``, ``OPENAI_IMAGENET_TEMPLATES``), the ones CLIP's papers report with.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Literal

import numpy as np

from mulclip_pl.data.records import DataError, LabeledImage, require_root

CIFAR = {
    10: ("cifar-10-batches-py", "test_batch", "labels", "batches.meta", "label_names"),
    100: ("cifar-100-python", "test", "fine_labels", "meta", "fine_label_names"),
}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}  # compared lower-case (.JPEG, .jpeg)


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
        if image.suffix.lower() in IMAGE_SUFFIXES
    ]
    return items, [readable.get(f.name, f.name.replace("_", " ")) for f in folders]


ImageNetLayout = Literal["wnid", "index"]


def imagenet_wnids() -> list[str]:
    """The 1000 ImageNet-1k wnids in class-index order, from timm's shipped list."""
    from timm.data import ImageNetInfo

    return list(ImageNetInfo().label_names())


def read_imagenet(root: str | Path, layout: ImageNetLayout, what: str,
                  subset: bool = False) -> tuple[list[LabeledImage], list[str]]:
    """ImageNet-style class folders -> items labelled with ImageNet-1k indices, and class names.

    layout 'wnid': folders named n01440764 ... (ImageNet val, ImageNet-O); 'index': folders
    0 ... 999 (ImageNet-V2). ``subset``: score over the classes present only (ImageNet-O's 200),
    labels renumbered 0..K-1 in ImageNet order; otherwise over all 1000.
    """
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    expected = "ROOT/n01440764/<image>, one folder per wnid" if layout == "wnid" else "ROOT/0/<image> ... ROOT/999/<image>"
    base = require_root(root, what, expected)
    folders = sorted(p for p in base.iterdir() if p.is_dir())
    if not folders:
        raise DataError(f"{what}: no class folders in {base}; expected {expected}"
                        + (" (a flat ImageNet val folder must first be sorted into wnid folders)" if layout == "wnid" else ""))
    index_of = {w: i for i, w in enumerate(imagenet_wnids())} if layout == "wnid" else {str(i): i for i in range(1000)}
    unknown = [f.name for f in folders if f.name not in index_of]
    if unknown:
        raise DataError(f"{what}: folders {unknown[:5]} in {base} are not ImageNet-1k classes; expected {expected}")
    classes = sorted(index_of[f.name] for f in folders) if subset else list(range(len(IMAGENET_CLASSNAMES)))
    label_of = {c: i for i, c in enumerate(classes)}
    items = [
        LabeledImage(id=f"{folder.name}/{image.name}", image=image, label=label_of[index_of[folder.name]])
        for folder in folders
        for image in sorted(folder.iterdir())
        if image.suffix.lower() in IMAGE_SUFFIXES
    ]
    return items, [IMAGENET_CLASSNAMES[c] for c in classes]
