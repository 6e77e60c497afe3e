"""Training data-loader throughput (samples / s) at ViT-B/16's 224 px, with DOCCI-sized inputs.

    python benchmarks/dataloader.py --workers 2 --batch-size 128

Writes ``--images`` JPEGs of 1024 x 768 (DOCCI's photos are about that size) with ~150-word,
~9-sentence captions into a temp folder, then times the real pipeline: JPEG decode, open_clip's
train transform, spaCy sentence split, 248-token BPE for the caption, summary and M subcaptions,
collation. ``--shrink 256`` first runs ``mulclip-pl shrink-images`` on them (what to do for real
training). Compare with the GPU's step rate: the loader is the bottleneck when its samples/s is
below batch_size / step_time.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from mulclip_pl.data import GenericCaptions
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--shrink", type=int, default=None, metavar="MIN_SIDE",
                        help="time a shrink-images copy with this shorter side instead of the full-size photos")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        full = Path(folder) / "full"
        full.mkdir()
        captions = write_inputs(full, args.images)
        if args.shrink:
            shrink_images(str(full), f"{folder}/shrunk", min_side=args.shrink, workers=args.workers)
            captions = Path(folder) / "shrunk" / captions.name
        data = GenericCaptions(train_file=str(captions), batch_size=args.batch_size, num_workers=args.workers,
                               image_size=224, max_sentences=10)
        data.setup("fit")
        breakdown = per_sample_costs(data, args.batch_size)  # before the workers start competing for the cores
        loader = data.train_dataloader()  # persistent workers: later epochs reuse them
        batches = iter(loader)
        next(batches)  # worker start-up is not throughput
        start, samples, served = time.perf_counter(), 0, 0
        while served < args.batches - 1:
            for batch in batches:
                samples, served = samples + batch["image"].shape[0], served + 1
                if served == args.batches - 1:
                    break
            batches = iter(loader)
        seconds = time.perf_counter() - start
    source = f"shrunk to {args.shrink} px" if args.shrink else "1024 x 768 JPEGs"
    print(f"{source}, {args.workers} workers, batch {args.batch_size}: {samples / seconds:.0f} samples/s "
          f"({samples} samples in {seconds:.1f} s)")
    print("one process, per sample: " + ", ".join(f"{k} {v * 1000:.2f} ms" for k, v in breakdown.items()))


def per_sample_costs(data: GenericCaptions, batch_size: int) -> dict[str, float]:
    """Where a sample's time goes, measured in this process: image, text, and the batch collate."""
    from mulclip_pl.data.datasets import collate, load_image

    dataset = data.train_set
    records = dataset.items[:batch_size]
    start = time.perf_counter()
    for record in records:
        dataset.transform(load_image(record.image, record.id, dataset.decode_min_side))
    image = (time.perf_counter() - start) / len(records)
    start = time.perf_counter()
    for record in records:
        dataset.text(record, random.Random(0))
    text = (time.perf_counter() - start) / len(records)
    samples = [dataset[(0, i)] for i in range(len(records))]
    start = time.perf_counter()
    collate(samples)
    return {"image decode + transform": image, "text (split, summary, tokenize)": text,
            "collate": (time.perf_counter() - start) / len(records)}


if __name__ == "__main__":
    main()
