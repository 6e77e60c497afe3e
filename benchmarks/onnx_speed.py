"""CPU inference: the ONNX export (onnxruntime) against torch eager, both towers, same weights.

    python benchmarks/onnx_speed.py                       # ViT-B-16 stretched to 248, batch 32, 2 threads
    python benchmarks/onnx_speed.py --model mulclip-tiny --batch-size 64

The model has random weights (speed does not depend on them), stretched to 248 text positions by
``build_clip`` and written by ``mulclip-pl export --format onnx``'s own code (``export_onnx_dir``).
Torch runs open_clip's ``encode_image`` / ``encode_text`` on the same plain model in
``inference_mode``; both sides get the same thread count. The text graph always computes all 248
positions (its second dimension is fixed), so torch is given the full 248 too: equal work. The
largest difference between the two outputs is printed as a check that they compute the same thing.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from mulclip_pl.export.onnx import IMAGE_FILE, TEXT_FILE, export_onnx_dir, plain_clip
from mulclip_pl.model.build import build_clip


def seconds(fn, warmup: int, repeats: int) -> float:
    """Median wall time of ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ViT-B-16")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=160, help="caption length, EOT included (<= 248)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    clip = plain_clip(build_clip(args.model), args.model)
    size = clip.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    images = torch.randn(args.batch_size, 3, size, size)
    ids = torch.zeros(args.batch_size, int(clip.context_length), dtype=torch.long)
    ids[:, 0], ids[:, 1 : args.tokens - 1], ids[:, args.tokens - 1] = 49406, 1000, 49407
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        export_onnx_dir(clip, args.model, folder)
        print(f"export: {time.perf_counter() - start:.0f} s")
        for tower, file, name, x, encode in (("image", IMAGE_FILE, "image", images, clip.encode_image),
                                             ("text", TEXT_FILE, "text", ids, clip.encode_text)):
            onnx_session = session(Path(folder) / file, args.threads)
            feed = {name: x.numpy()}
            with torch.inference_mode():
                torch_s = seconds(lambda: encode(x), args.warmup, args.repeats)
                difference = np.abs(onnx_session.run(None, feed)[0] - encode(x).numpy()).max()
            onnx_s = seconds(lambda: onnx_session.run(None, feed), args.warmup, args.repeats)
            rows.append((tower, torch_s, onnx_s, difference))
    print(f"\nmodel {args.model} ({clip.context_length} text positions), batch {args.batch_size}, "
          f"{args.threads} threads, torch {torch.__version__}, onnxruntime {ort.__version__}, "
          f"median of {args.repeats} after {args.warmup} warm-up")
    print("| encoder | torch eager s / batch | onnxruntime s / batch | items / s (torch / ORT) | torch / ORT time "
          "| max abs diff |\n|---|---:|---:|---:|---:|---:|")
    for tower, torch_s, onnx_s, difference in rows:
        rates = f"{args.batch_size / torch_s:.1f} / {args.batch_size / onnx_s:.1f}"
        print(f"| {tower} | {torch_s:.2f} | {onnx_s:.2f} | {rates} | {torch_s / onnx_s:.2f} | {difference:.1e} |")


if __name__ == "__main__":
    main()
