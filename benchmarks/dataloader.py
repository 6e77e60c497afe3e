"""Training data-loader throughput (samples / s, and per worker): loose files vs prepared shards.

    python benchmarks/dataloader.py --sources raw prepared --workers 1 2 --images 128 --batch-size 32 --batches 8 --repeats 3

Writes ``--images`` JPEGs of 1024 x 768 (DOCCI's photos are about that size) with ~150-word,
9-sentence captions into a temp folder, then times the real training loaders at ViT-B/16's 224 px:
- ``raw``: the files as they are (JPEG decode at reduced scale, open_clip's train transform, spaCy
  sentence split and BPE of each sentence, collation);
- ``shrunk``: the same from a ``mulclip-pl shrink-images --min_side`` copy;
- ``prepared``: ``mulclip-pl prepare --min_side`` shards read by ``--data Prepared`` (image bytes
  from Arrow, token ids stored: no text work).
Compare with the GPU's step rate: the loader is the bottleneck when its samples/s is below
batch_size / step_time. Per-sample costs are also measured in one process, before workers start.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mulclip_pl.data import GenericCaptions, Prepared
from mulclip_pl.data.prepared.prepare import prepare
from mulclip_pl.data.shrink import shrink_images

WORDS = ("red green large small wooden metal table chair window street car tree sky building person dog "
         "shadow light left right behind front near far old new bright dark").split()


def write_inputs(folder: Path, count: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        gradient = np.linspace(0, 255, 1024, dtype=np.uint8)[None, :, None].repeat(768, 0).repeat(3, 2)
        noise = np.random.default_rng(i).integers(0, 40, (768, 1024, 3), dtype=np.uint8)
        Image.fromarray(gradient // 2 + noise).save(folder / f"{i}.jpg", quality=90)
        sentences = [" ".join(rng.choice(WORDS) for _ in range(16)).capitalize() + "." for _ in range(9)]
        rows.append({"image": f"{i}.jpg", "caption": " ".join(sentences)})
    path = folder / "captions.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def build(source: str, folder: Path, captions: Path, min_side: int, workers: int, batch_size: int):
    common = dict(batch_size=batch_size, num_workers=workers, image_size=224, max_sentences=10)
    if source == "prepared":
        out = folder / f"prepared{min_side}"
        if not (out / "manifest.json").is_file():
            prepare(data=GenericCaptions(train_file=str(captions)), out=str(out), min_side=min_side, num_proc=2)
        data = Prepared(path=str(out), **common)
    elif source == "shrunk":
        copy = folder / f"shrunk{min_side}"
        if not copy.is_dir():
            shrink_images(str(captions.parent), str(copy), min_side=min_side, workers=2)
        data = GenericCaptions(train_file=str(copy / captions.name), **common)
    else:
        data = GenericCaptions(train_file=str(captions), **common)
    data.setup("fit")
    return data


def throughput(data, batches: int) -> tuple[float, int, float]:
    """Samples / s over ``batches`` batches after the first (worker start-up is not throughput)."""
    loader = data.train_dataloader()  # persistent workers: later epochs reuse them
    iterator = iter(loader)
    next(iterator)
    start, samples, served = time.perf_counter(), 0, 0
    while served < batches:
        for batch in iterator:
            samples, served = samples + batch["image"].shape[0], served + 1
            if served == batches:
                break
        iterator = iter(loader)
    seconds = time.perf_counter() - start
    return samples / seconds, samples, seconds


def per_sample_costs(data, count: int) -> dict[str, float]:
    """Where a sample's time goes, in this process: reading the item, image, text, collate (seconds)."""
    from mulclip_pl.data.datasets import collate, load_image

    dataset, costs = data.train_set, {}
    torch.set_num_threads(1)  # as in a loader worker
    for i in range(count):  # warm up: spaCy's pipeline, the BPE cache, page cache
        dataset[(0, i)]
    start = time.perf_counter()
    items = [dataset.items[i] for i in range(count)]
    costs["read item"] = time.perf_counter() - start
    start = time.perf_counter()
    for item in items:
        dataset.transform(load_image(item.image, item.id, dataset.decode_min_side))
    costs["image decode + transform"] = time.perf_counter() - start
    start = time.perf_counter()
    for item in items:
        dataset.text(item, random.Random(0))
    costs["text"] = time.perf_counter() - start
    samples = [dataset[(0, i)] for i in range(count)]
    start = time.perf_counter()
    collate(samples)
    costs["collate"] = time.perf_counter() - start
    return {k: v / count for k, v in costs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", nargs="+", default=["raw", "prepared"], choices=["raw", "shrunk", "prepared"])
    parser.add_argument("--workers", nargs="+", type=int, default=[2])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batches", type=int, default=6, help="timed batches per loader (after the first)")
    parser.add_argument("--min-side", type=int, default=256, help="shorter side of shrunk / prepared images")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per source and worker count")
    args = parser.parse_args()
    rates: dict[tuple[str, int], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "full").mkdir()
        captions = write_inputs(folder / "full", args.images)
        for source in args.sources:
            costs = per_sample_costs(build(source, folder, captions, args.min_side, 0, args.batch_size), 32)
            print(f"{source}, one process, per sample: " + ", ".join(f"{k} {v * 1000:.2f} ms" for k, v in costs.items()))
        for _ in range(args.repeats):  # sources alternate, so a busy spell on a shared machine hits both
            for workers in args.workers:
                for source in args.sources:
                    rate, samples, seconds = throughput(build(source, folder, captions, args.min_side, workers,
                                                              args.batch_size), args.batches)
                    rates.setdefault((source, workers), []).append(rate)
                    print(f"{source}, {workers} workers, batch {args.batch_size}: {rate:.0f} samples/s "
                          f"({samples} samples in {seconds:.1f} s)")
    print("\n| source | workers | samples/s (median of runs) | per worker | runs |\n|---|---:|---:|---:|---|")
    for (source, workers), runs in rates.items():
        median = statistics.median(runs)
        print(f"| {source} | {workers} | {median:.0f} | {median / max(1, workers):.0f} | "
              f"{', '.join(f'{r:.0f}' for r in runs)} |")

if __name__ == "__main__":
    main()
