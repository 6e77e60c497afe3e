"""Tiny FG-OVD and ImageNet-family folders in their real layouts, written by code."""

from __future__ import annotations

import json

from PIL import Image

from tests.conftest import write_image

WNIDS = ("n01440764", "n01443537", "n15075141")  # ImageNet-1k classes 0, 1 and 999
RED, BLUE = (255, 0, 0), (0, 0, 255)


def write_imagenet(root, layout="wnid", per_class=2):
    """ROOT/<wnid>/*.JPEG (ImageNet val, ImageNet-O) or ROOT/<index>/*.jpeg (ImageNet-V2)."""
    folders = WNIDS if layout == "wnid" else ("0", "1", "999")
    suffix = ".JPEG" if layout == "wnid" else ".jpeg"
    for c, folder in enumerate(folders):
        for i in range(per_class):
            write_image(root / folder / f"img{i}{suffix}", (80 * c, 40 * i, 10))
    return folders


def coco_image(root, name="000000000001.jpg"):
    """A 64x32 val2017 image: left half red, right half blue."""
    path = root / "val2017" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (64, 32), BLUE)
    image.paste(Image.new("RGB", (32, 32), RED), (0, 0))
    image.save(path)
    return path


def fgovd_row(box=(0, 0, 32, 32), negatives=10, img="val2017/000000000001.jpg", positive="a red square"):
    return {"img_path": img, "bbox": list(box), "pos_expression": [positive],
            "neg_expression": [f"a blue square number {i}" for i in range(negatives)]}


def write_fgovd(root, rows_by_file: dict[str, list[dict]] | None = None):
    """FG-CLIP's FG-OVD jsonl files next to a COCO folder; by default two good rows per split."""
    coco_image(root)
    good = [fgovd_row(), fgovd_row(box=(32, 0, 32, 32), positive="a blue square")]
    rows_by_file = rows_by_file or {name: good for name in (
        "h_attributes_llava.jsonl", "m_attributes_llava.jsonl", "e_attributes_llava.jsonl", "shuffle_negatives_llava.jsonl")}
    for name, rows in rows_by_file.items():
        (root / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root
