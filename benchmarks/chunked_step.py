"""Memory and time of a MulCLIP step against the batch B, whole or in chunks of C (``--model.encode_chunk``).

    python benchmarks/chunked_step.py --model mulclip-tiny --batch-sizes 16 32 64 128 --chunk 16   # CPU
    python benchmarks/chunked_step.py --model ViT-B-16 --batch-sizes 4 8 16 --chunk 4 --steps 1     # CPU
    python benchmarks/chunked_step.py --model ViT-B-16 --batch-sizes 128 1024 --chunk 128 --whole-up-to 128  # GPU, bf16

Gradient caching should keep the step's memory flat in B (one chunk's activations) and cost about
one extra forward pass of the towers. Each point runs in a fresh process: fwd+bwd+AdamW steps
(median of ``--steps`` after one warm-up) on ``train_step.py``'s synthetic batch. Memory is the
step's peak above what the process held before it (activations, gradients, AdamW state): CUDA's
allocator peak, or on a CPU the peak resident size, measured in a second process over one step
with glibc made to hand every freed tensor back to the system (MALLOC_MMAP_THRESHOLD_), so that
the resident size follows the live tensors (that setting slows steps down: not timed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext

import torch

from mulclip_pl.module import MulCLIP
from train_step import synthetic_batch  # benchmarks/ is this script's folder, so on sys.path


def resident_mib(field: str) -> float:
    line = next(x for x in open("/proc/self/status") if x.startswith(field))
    return int(line.split()[1]) / 1024


def measure_point(args, batch_size: int, chunk: int | None) -> dict:
    """One configuration, in this process: ms per step and the step's peak memory in MiB."""
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    module = MulCLIP(model_name=args.model, encode_chunk=chunk, grad_checkpointing=args.grad_checkpointing).to(device)
    size = module.preprocess_config()["image_size"]
    batch = {k: v.to(device) for k, v in synthetic_batch(batch_size, size, 160, args.sentences, device).items()}
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-5)
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.type == "cuda" else nullcontext
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated() / 2**20
    else:
        open("/proc/self/clear_refs", "w").write("5")  # the peak resident size restarts from here
        before = resident_mib("VmRSS")
    times = []
    for _ in range(args.steps + 1):  # one warm-up step
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            loss = module.compute_losses(batch).total
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else resident_mib("VmHWM")
    return {"ms": 1000 * statistics.median(times[1:]) if args.steps else None, "peak_mib": peak - before}


def run_point(args, batch_size: int, chunk: int | None) -> dict:
    """``measure_point`` in fresh processes, so that no step inherits another's memory."""
    if args.device.startswith("cuda"):
        return _child(args, batch_size, chunk, args.steps, {})
    timed = _child(args, batch_size, chunk, args.steps, {})
    memory = _child(args, batch_size, chunk, 0, {"MALLOC_MMAP_THRESHOLD_": "65536"})
    return timed if "error" in timed else memory if "error" in memory else {**memory, "ms": timed["ms"]}


def _child(args, batch_size: int, chunk: int | None, steps: int, env: dict[str, str]) -> dict:
    command = [sys.executable, __file__, "--point", str(batch_size), str(chunk or 0), "--model", args.model,
               "--steps", str(steps), "--sentences", str(args.sentences), "--device", args.device]
    command += ["--grad-checkpointing"] if args.grad_checkpointing else []
    command += ["--threads", str(args.threads)] if args.threads else []
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env})
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mulclip-tiny")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--chunk", type=int, default=16, help="C, the samples encoded at a time")
    parser.add_argument("--whole-up-to", type=int, default=None, help="time the whole batch only up to this B (memory)")
    parser.add_argument("--sentences", type=int, default=6)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--grad-checkpointing", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 is steadier on a shared CPU)")
    parser.add_argument("--point", type=int, nargs=2, default=None, help=argparse.SUPPRESS)  # B, C (0 = whole)
    args = parser.parse_args()
    if args.point:
        print(json.dumps(measure_point(args, args.point[0], args.point[1] or None)))
        return
    precision = "bf16 autocast" if args.device.startswith("cuda") else "fp32"
    threads = args.threads or torch.get_num_threads()
    print(f"model {args.model}, device {args.device} ({precision}, threads {threads}), M = {args.sentences}, "
          f"chunk C = {args.chunk}, median of {args.steps} step(s)")
    print("| B | step | ms / step | ms / sample | step memory MiB | time x whole |\n|---:|---|---:|---:|---:|---:|")
    for batch_size in args.batch_sizes:
        whole = None
        if args.whole_up_to is None or batch_size <= args.whole_up_to:
            whole = run_point(args, batch_size, None)
            _row(batch_size, "whole batch", whole, None)
        if batch_size > args.chunk:
            _row(batch_size, f"chunks of {args.chunk}", run_point(args, batch_size, args.chunk), whole)


def _row(batch_size: int, label: str, result: dict, whole: dict | None) -> None:
    if "error" in result:
        print(f"| {batch_size} | {label} | failed: {result['error']} | | | |", flush=True)
        return
    ratio = f"{result['ms'] / whole['ms']:.2f}" if whole and "ms" in whole else ""
    print(f"| {batch_size} | {label} | {result['ms']:.0f} | {result['ms'] / batch_size:.1f} | "
          f"{result['peak_mib']:.0f} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
