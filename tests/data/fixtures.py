"""Tiny copies of each real on-disk format, written by code (docs/DATA.md)."""

from __future__ import annotations

import json
import pickle

import numpy as np

from tests.conftest import write_image

DOCCI_CAPTION = "A red ball sits on a wooden table. Behind it, Dr. Smith's 3.5 m poster hangs on the wall.\nIt is faded."


def write_docci(root):
    rows = [
        {"example_id": "train_00001", "split": "train", "image_file": "train_00001.jpg", "description": DOCCI_CAPTION},
        {"example_id": "train_00002", "split": "train", "image_file": "train_00002.jpg", "description": "A blue cup. A green pen."},
        {"example_id": "test_00001", "split": "test", "image_file": "test_00001.jpg", "description": "A yellow car parked outside."},
        {"example_id": "test_00002", "split": "test", "image_file": "test_00002.jpg", "description": "Two dogs play. One is brown."},
    ]
    root.mkdir(parents=True, exist_ok=True)
    (root / "docci_descriptions.jsonlines").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    for i, row in enumerate(rows):
        write_image(root / "images" / row["image_file"], (40 * i, 100, 200))
    return rows


def write_urban1k(root, n=3):
    for k in range(1, n + 1):
        write_image(root / "image" / f"{k}.jpg", (50 * k, 20, 20))
        (root / "caption" / f"{k}.txt").parent.mkdir(parents=True, exist_ok=True)
        (root / "caption" / f"{k}.txt").write_text(f"Street scene number {k}. A bus drives by.\n")


def write_dci(root, with_splits=False):
    for name, short in (("sa_1", "A kitchen."), ("sa_2", "A garden.")):
        ann = {"image": f"{name}.jpg", "short_caption": short, "extra_caption": f"It has details about {name}.",
               "mask_data": {"0": {"caption": "a mask region"}}}
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"{name}.json").write_text(json.dumps(ann))
        write_image(root / "photos" / f"{name}.jpg")
    if with_splits:
        (root / "splits.json").write_text(json.dumps({"train": ["sa_1.json"], "valid": [], "test": ["sa_2.json"]}))


def write_sharegpt4v(root, n=5):
    items = []
    for i in range(n):
        rel = f"coco/train2017/{i:012d}.jpg"
        write_image(root / "images" / rel)
        items.append({"id": str(i), "image": rel, "conversations": [
            {"from": "human", "value": "<image>\nDescribe the image in detail."},
            {"from": "gpt", "value": f"The image {i} shows a long scene. There are many things."},
        ]})
    path = root / "share-captioner_coco_lcs_sam_1246k_1107.json"
    path.write_text(json.dumps(items))
    return path


def write_karpathy(root, coco=True):
    images = []
    for i, split in enumerate(["train", "restval", "test", "test", "val"]):
        filename = f"img_{i}.jpg"
        folder = root / ("val2014" if coco else "") / filename
        write_image(folder)
        entry = {"filename": filename, "imgid": i, "split": split,
                 "sentences": [{"raw": f"caption {j} of image {i}."} for j in range(5)]}
        if coco:
            entry["filepath"] = "val2014"
        images.append(entry)
    name = "dataset_coco.json" if coco else "dataset_flickr30k.json"
    (root / name).write_text(json.dumps({"images": images, "dataset": "coco" if coco else "flickr30k"}))


def write_cifar10(root, n=6):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(0).integers(0, 255, size=(n, 3072), dtype=np.uint8)
    with (folder / "test_batch").open("wb") as f:
        pickle.dump({b"data": data, b"labels": [i % 10 for i in range(n)]}, f)
    with (folder / "batches.meta").open("wb") as f:
        pickle.dump({b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse",
                                      b"ship", b"truck"]}, f)


def write_generic(root, fmt="jsonl"):
    rows = [{"image": "a.png", "caption": "A red square. It is big.", "summary": "red square", "id": "a"},
            {"image": "b.png", "caption": "A blue circle. It is small.", "summary": "", "id": "b"}]
    for r in rows:
        write_image(root / r["image"])
    path = root / f"captions.{fmt}"
    if fmt == "jsonl":
        path.write_text("\n".join(json.dumps(r) for r in rows))
    else:
        path.write_text("image,caption,summary,id\n" + "\n".join(f'{r["image"]},"{r["caption"]}",{r["summary"]},{r["id"]}' for r in rows))
    return path
