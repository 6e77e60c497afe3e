"""``--model.compile``: training steps per second eager against compiled, with the compile time apart.

    python benchmarks/compile.py --model mulclip-tiny --batch-size 64 --steps 10    # the demo's stage 2
    python benchmarks/compile.py --model mulclip-tiny --batch-size 64 --stage1      # the demo's stage 1
    python benchmarks/compile.py --model ViT-B-16 --batch-size 8 --steps 3

Batches are the demo's: SynthLong records (generated into a temporary folder by the demo's generator)
through the demo's datamodule, so caption lengths and sentence counts change from step to step as in
a fit; ``--stage1`` trains as configs/synthlong/stage1.yaml does (global loss only, 77 positions, one
sentence). A model of another image size gets random images of its size. Each variant runs in a
fresh process (bf16 autocast on a GPU, as train_step.py): AdamW steps of ``MulCLIP.compute_losses``
after ``configure_model`` (where Lightning compiles), ``--warmup`` steps, then the median of
``--steps`` timed ones. Compile time = the warm-up steps' time less as many steady steps, less the
same excess of eager's warm-up. ``cold``: inductor's on-disk caches off (a first run on a machine);
``warm``: the caches of an earlier run of the same variant (every later run on that machine).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch._dynamo.utils import counters

from mulclip_pl.data import GenericCaptions
from mulclip_pl.data.synthlong.generator import generate
from mulclip_pl.module import MulCLIP

VARIANTS = {  # name: MulCLIP's compile arguments, and whether inductor's on-disk caches are off
    "eager": dict(compile=False, cold=False),
    "dynamic-cold": dict(compile=True, compile_dynamic=True, cold=True),  # the defaults, on a first run
    "dynamic": dict(compile=True, compile_dynamic=True, cold=False),  # the defaults
    "automatic": dict(compile=True, compile_dynamic=None, cold=False),  # exact sizes first
    "max-autotune": dict(compile=True, compile_mode="max-autotune-no-cudagraphs", cold=False),
    "cudagraphs": dict(compile=True, compile_mode="reduce-overhead", cold=False),  # CUDA only
}


def demo_batches(model: str, batch_size: int, count: int, stage1: bool) -> list[dict]:
    """``count`` training batches of the demo's data and datamodule for ``model``'s image size and context."""
    config = MulCLIP(model_name=model, context_length=77 if stage1 else 248).preprocess_config()
    with tempfile.TemporaryDirectory() as folder:
        data = generate(Path(folder), image_size=64, sizes={"train": batch_size * count})
        module = GenericCaptions(train_file=str(data / "train.jsonl"), batch_size=batch_size, num_workers=0,
                                 image_size=64, context_length=config["context_length"], train_augment=False,
                                 max_sentences=1 if stage1 else 6)
        module.setup("fit")
        batches = list(module.train_dataloader())
    if config["image_size"] != 64:
        for batch in batches:
            batch["image"] = torch.randn(batch["image"].shape[0], 3, config["image_size"], config["image_size"])
    return batches


def run_variant(args: argparse.Namespace, name: str) -> dict:
    """One variant in this process: step times, compile time, dynamo's graph count."""
    options = {key: value for key, value in VARIANTS[name].items() if key != "cold"}
    device = torch.device(args.device)
    torch.manual_seed(0)
    batches = [{key: value.to(device) if torch.is_tensor(value) else value for key, value in batch.items()}
               for batch in demo_batches(args.model, args.batch_size, 4, args.stage1)]
    stage = dict(preset="global_only", context_length=77, long_weight=0.0, short_weight=1.0) if args.stage1 else {}
    module = MulCLIP(model_name=args.model, **options, **stage).to(device)
    module.configure_model()
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-6)
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    times = []
    for step in range(args.warmup + args.steps):
        sync()
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):  # as train_step.py: bf16 on a GPU
            loss = module.compute_losses(batches[step % len(batches)]).total
        loss.backward()
        optimizer.step()
        sync()
        times.append(time.perf_counter() - start)
    steady = statistics.median(times[args.warmup:])
    return {"step_s": steady, "compile_s": sum(times[:args.warmup]) - args.warmup * steady,
            "graphs": counters["stats"]["unique_graphs"]}


def measure(args: argparse.Namespace, name: str) -> dict:
    """``run_variant`` in a child process (a fresh compiler). ``cold``: inductor's caches off; ``warm``:
    after a first child that compiles the same graphs and fills the caches (its compile time:
    ``first_compile_s``, the cold figure where the caches started empty)."""
    cold = VARIANTS[name]["cold"]
    env = {**os.environ, "TORCHINDUCTOR_FORCE_DISABLE_CACHES": "1" if cold else "0"}
    command = [sys.executable, __file__, "--child", name, "--model", args.model, "--batch-size", str(args.batch_size),
               "--device", args.device,
               "--warmup", str(args.warmup), *(["--stage1"] if args.stage1 else []),
               *(["--threads", str(args.threads)] if args.threads else [])]
    def child(steps: int) -> dict:
        done = subprocess.run([*command, "--steps", str(steps)], env=env, capture_output=True, text=True, check=True)
        return json.loads(done.stdout.strip().splitlines()[-1])

    first = child(1) if VARIANTS[name]["compile"] and not cold else None
    return {**child(args.steps), "first_compile_s": first["compile_s"] if first else None}


def table(results: dict[str, dict]) -> str:
    """Compile time: a variant's warm-up excess less eager's (a first step is slower eagerly too); in
    brackets, that of the first run of a warm variant (see ``measure``). Repaid after: steps at which
    the warm compile time is won back."""
    eager = results["eager"]
    lines = ["| variant | s / step | steps / s | x eager | compile s | graphs | repaid after |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        compile_s, gain = r["compile_s"] - eager["compile_s"], eager["step_s"] - r["step_s"]
        first = f" ({r['first_compile_s'] - eager['compile_s']:.0f})" if r["first_compile_s"] is not None else ""
        repay = f"{max(compile_s, 0) / gain:.0f} steps" if gain > 0 else "never"
        extra = ("", "", "") if name == "eager" else (f"{compile_s:.1f}{first}", r["graphs"], repay)
        lines.append(f"| {name} | {r['step_s']:.3f} | {1 / r['step_s']:.2f} | {eager['step_s'] / r['step_s']:.2f} "
                     f"| {extra[0]} | {extra[1]} | {extra[2]} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mulclip-tiny")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant (median)")
    parser.add_argument("--warmup", type=int, default=3, help="steps that compile, before the timed ones")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--stage1", action="store_true", help="the demo's stage 1: global loss, 77 positions")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS),
                        default=["dynamic-cold", "dynamic", "automatic"])
    parser.add_argument("--threads", type=int, default=None, help="torch threads per process (default: torch's)")
    parser.add_argument("--child", choices=list(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(run_variant(args, args.child)))
        return
    print(f"model {args.model}, batch {args.batch_size}, {'stage 1' if args.stage1 else 'stage 2'}, "
          f"device {args.device}, threads {args.threads or torch.get_num_threads()}, "
          f"load {os.getloadavg()[0]:.1f}", flush=True)
    results = {}
    for name in dict.fromkeys(["eager", *args.variants]):
        results[name] = measure(args, name)
        print(f"{name}: {results[name]}", flush=True)
    print(f"load after: {os.getloadavg()[0]:.1f}")
    print(table(results))


if __name__ == "__main__":
    main()
