"""Inference throughput: MulCLIP's exported encoders vs the plain open_clip model of the same architecture.

    python benchmarks/inference.py --model mulclip-tiny --batch-size 64
    python benchmarks/inference.py --model ViT-B-16 --batch-size 256     # GPU, bf16 autocast

The training heads are not part of the exported model, so the two must be equal within noise.
Text is measured at 77 tokens for plain CLIP and at a 160-token caption for the stretched model
(the longer caption is the point of the method; its cost is shown, not hidden).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from contextlib import nullcontext

import open_clip
import torch

from mulclip_pl.export.open_clip_dir import export_open_clip_dir
from mulclip_pl.model.build import build_clip


def throughput(fn, batch: int, repeats: int, device: torch.device) -> float:
    """Items per second, median over ``repeats`` timed calls after one warm-up."""
    times = []
    for i in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mulclip-tiny")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.type == "cuda" else nullcontext
    torch.manual_seed(0)
    plain = open_clip.create_model(args.model).to(device).eval()
    with tempfile.TemporaryDirectory() as folder:
        export_open_clip_dir(build_clip(args.model), args.model, folder)
        exported = open_clip.create_model(f"local-dir:{folder}").to(device).eval()
    size = plain.visual.image_size[0] if isinstance(plain.visual.image_size, tuple) else plain.visual.image_size
    images = torch.randn(args.batch_size, 3, size, size, device=device)
    tokens = torch.zeros(args.batch_size, 248, dtype=torch.long, device=device)
    tokens[:, 0], tokens[:, 1:159], tokens[:, 159] = 49406, 1000, 49407
    rows = []
    with torch.inference_mode(), autocast():
        for label, model, text in (("open_clip (77 tokens)", plain, tokens[:, :77].clone()),
                                   ("MulCLIP export (248 positions)", exported, tokens)):
            if text.shape[1] == 77:
                text[:, 76] = 49407
            image_rate = throughput(lambda: model.encode_image(images), args.batch_size, args.repeats, device)
            text_rate = throughput(lambda: model.encode_text(text), args.batch_size, args.repeats, device)
            rows.append((label, image_rate, text_rate))
    print(f"model {args.model}, device {args.device}, batch {args.batch_size}")
    print("| encoder | images / s | texts / s |\n|---|---:|---:|")
    for label, image_rate, text_rate in rows:
        print(f"| {label} | {image_rate:.0f} | {text_rate:.0f} |")
    print(f"image throughput ratio (export / plain): {rows[1][1] / rows[0][1]:.3f}")


if __name__ == "__main__":
    main()
