"""``make fingerprint``: one digest that changes when training, evaluation or export changes.

Runs the demo's own path at a small size, through the CLI and the shipped configs: stage 1 and
stage 2 fits (each over an epoch boundary, with validation, loader workers as configured), a test
call on SynthLong and its cross-domain set, and a safetensors export. Prints one sha256 over the
weights of both checkpoints, every scalar logged per step (losses, learning rate, validation
metrics), the test metrics and the exported file, and one digest per part so that a difference can
be located.

Run it before and after a change that should change nothing (a refactor): on the same machine the
digests must be equal. Across machines they may differ: float reductions round differently with
another CPU kernel set (``cpu capability``) or another thread count, both printed beside the digest
(docs/EXPERIMENTS.md, "Reproducibility").

    python benchmarks/fingerprint.py --out runs/fingerprint
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

import torch
import yaml

from mulclip_pl.cli import main as cli
from mulclip_pl.data.synthlong import generator as synthlong

SIZES = {"train": 48, "val": 16, "test": 32}  # 6 steps an epoch at batch 8
SHIFTED_SIZES = {"test": 32}


def run(out: Path, model: str, workers: int) -> dict[str, str]:
    synthlong.SPLITS.update(SIZES)  # the generator's split sizes (the configs name no sizes)
    synthlong.SHIFTED_SPLITS.update(SHIFTED_SIZES)
    data = ["--data.init_args.root", str(out / "synthlong"), "--data.init_args.batch_size", "8",
            "--data.init_args.num_workers", str(workers)]
    common = ["--model.model_name", model, "--trainer.enable_progress_bar", "false",
              "--trainer.enable_model_summary", "false", "--trainer.log_every_n_steps", "1",
              "--trainer.logger.init_args.save_dir", str(out / "logs")]
    for stage, extra in [("stage1", ["--trainer.limit_val_batches", "1.0"]),
                         ("stage2", ["--model.init_from", str(out / "stage1" / "last.ckpt")])]:
        cli(["fit", "--config", f"configs/synthlong/{stage}.yaml", *common, *data, *extra,
             "--trainer.max_epochs", "2", "--trainer.check_val_every_n_epoch", "1",
             "--trainer.default_root_dir", str(out / stage), "--checkpoint.dirpath", str(out / stage)])
    suite = yaml.safe_load(Path("configs/synthlong/test.yaml").read_text())  # the demo's test sets, small
    for entry in suite["data"]["init_args"]["datasets"]:
        root = Path(entry["init_args"]["root"]).name
        entry["init_args"].update(root=str(out / root), batch_size=8, num_workers=workers)
    (out / "test.yaml").write_text(yaml.safe_dump(suite))
    cli(["test", "--config", "configs/synthlong/stage2.yaml", "--config", str(out / "test.yaml"),
         "--model.model_name", model, "--ckpt_path", str(out / "stage2" / "last.ckpt"),
         "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
         "--trainer.default_root_dir", str(out / "test")])
    cli(["export", "--ckpt", str(out / "stage2" / "last.ckpt"), "--out", str(out / "export.safetensors")])
    return {
        "stage1 weights": weights_digest(out / "stage1" / "last.ckpt"),
        "stage1 logged scalars": scalars_digest(out / "logs" / "tensorboard" / "stage1"),
        "stage2 weights": weights_digest(out / "stage2" / "last.ckpt"),
        "stage2 logged scalars": scalars_digest(out / "logs" / "tensorboard" / "stage2"),
        "test metrics": _sha(json.dumps(json.loads((out / "test" / "results.json").read_text())["results"],
                                        sort_keys=True).encode()),
        "export": _sha((out / "export.safetensors").read_bytes()),
    }


def weights_digest(ckpt: Path) -> str:
    """Every tensor of the checkpoint's model state (name, dtype, shape, bytes), in name order."""
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].contiguous().reshape(-1)
        digest.update(f"{name}|{tensor.dtype}|{tuple(state[name].shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def scalars_digest(log_dir: Path) -> str:
    """Every scalar TensorBoard holds for the run (tag, step, value as float32 bits), wall time left out."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    events.Reload()
    rows = [(tag, e.step, torch.tensor(e.value).view(torch.int32).item())
            for tag in sorted(events.Tags()["scalars"]) for e in events.Scalars(tag)]
    if not any(tag.startswith("train") for tag, _, _ in rows):
        raise RuntimeError(f"no training losses logged under {log_dir}: the fingerprint would not see them")
    return _sha(json.dumps(rows).encode())


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/fingerprint", help="working folder (emptied first)")
    parser.add_argument("--model", default="mulclip-tiny", help="open_clip model name (the demo's by default)")
    parser.add_argument("--workers", type=int, default=2, help="loader workers (the demo's 2 by default)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    sys.argv = sys.argv[:1]  # the CLI calls below get their arguments as lists
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    parts = run(out, args.model, args.workers)
    total = _sha(json.dumps(parts, sort_keys=True).encode())
    print("\n## fingerprint")
    for name, value in parts.items():
        print(f"{name:>22}: {value[:16]}")
    print(f"machine: torch {torch.__version__}, cpu capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{torch.get_num_threads()} threads; {time.perf_counter() - start:.0f} s")
    print(f"digest: {total}")
    (out / "fingerprint.json").write_text(json.dumps({**parts, "digest": total}, indent=2))
    return total


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
