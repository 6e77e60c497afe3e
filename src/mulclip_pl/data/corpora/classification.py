"""Zero-shot classification sets: CIFAR-10/100 python pickles, image folders and the ImageNet family.

ImageNet class indices follow the sorted WordNet ids (wnids) that timm ships
(``timm/data/_info/imagenet_synsets.txt``); readable names and prompts are open_clip's
(``IMAGENET_CLASSNAMES``, ``OPENAI_IMAGENET_TEMPLATES``), the ones CLIP's papers report with.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Literal

import numpy as np

from mulclip_pl.data.records import LabeledImage, require_root
from mulclip_pl.errors import DataError
from mulclip_pl.weights.safe_pickle import RefusedGlobal, load_plain_data

log = logging.getLogger(__name__)

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
    """A CIFAR batch: plain data only (a crafted file cannot run code: see weights/safe_pickle.py)."""
    if not path.is_file():
        raise DataError(f"CIFAR file not found: {path}")
    try:
        raw = load_plain_data(path)
    except RefusedGlobal as exc:
        raise DataError(
            f"refused to read CIFAR file {path}: it holds a pickled {exc.name} object, which CIFAR's batches never "
            "do (numpy arrays, lists, bytes and str only), and unpickling it could run code hidden in the file. "
            "Use the python release from https://www.cs.toronto.edu/~kriz/cifar.html"
        ) from None
    except Exception as exc:  # truncated or foreign files: pickle raises many kinds
        raise DataError(f"could not read CIFAR file {path}: {type(exc).__name__}: {exc}") from None
    if not isinstance(raw, dict):
        raise DataError(f"CIFAR file {path} holds a {type(raw).__name__}, not the dict of a CIFAR batch")
    return {k.decode() if isinstance(k, bytes) else k: _decode(v) for k, v in raw.items()}


def _decode(value):
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode() for v in value]
    return value


def read_image_folder(root: str | Path, class_names_file: str | Path | None = None) -> tuple[list[LabeledImage], list[str]]:
    """``ROOT/<class>/<image>``; optional JSON file {folder: readable name} (e.g. ImageNet wnids).

    Classes are in sorted folder order; folders named by numbers (``0``, ``1``, ... ``10``) in
    numeric order, so that the label of folder ``k`` is its place among the numbers, not among strings.
    """
    root = require_root(root, "image folder", "ROOT/<class>/<image>")
    folders = sorted((p for p in root.iterdir() if p.is_dir()), key=_folder_order)
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


def _folder_order(folder: Path) -> tuple:
    return (0, int(folder.name), folder.name) if folder.name.isdigit() else (1, 0, folder.name)


ImageNetLayout = Literal["wnid", "index"]


def imagenet_wnids() -> list[str]:
    """The 1000 ImageNet-1k wnids in class-index order, from timm's shipped list."""
    from timm.data import ImageNetInfo

    return list(ImageNetInfo().label_names())


def read_imagenet(root: str | Path, layout: ImageNetLayout, what: str, subset: bool = False,
                  expected_classes: int = 1000) -> tuple[list[LabeledImage], list[str]]:
    """ImageNet-style class folders -> items labelled with ImageNet-1k indices, and class names.

    layout 'wnid': folders named n01440764 ... (ImageNet val, ImageNet-O); 'index': folders
    0 ... 999 (ImageNet-V2), labelled by their number. ``subset``: score over the classes present
    only (ImageNet-O's 200), labels renumbered 0..K-1 in ImageNet order; otherwise over all 1000.
    A copy with fewer than ``expected_classes`` folders is scored, with a warning that says how.
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
    if len(folders) < expected_classes:  # a partial copy: its score is not the published set's
        scored = (f"{len(classes)}-way over the classes present, not {expected_classes}-way" if subset
                  else f"{len(classes)}-way on the images of those {len(folders)} classes only")
        log.warning("%s: %s holds %d of its %d class folders (%d missing): scored %s; not comparable with "
                    "full-set numbers", what, base, len(folders), expected_classes, expected_classes - len(folders),
                    scored)
    items = [
        LabeledImage(id=f"{folder.name}/{image.name}", image=image, label=label_of[index_of[folder.name]])
        for folder in folders
        for image in sorted(folder.iterdir())
        if image.suffix.lower() in IMAGE_SUFFIXES
    ]
    return items, [IMAGENET_CLASSNAMES[c] for c in classes]
