"""The fits that issue #47's resume matrix and ``tests/test_fsdp.py`` share, run once (``run_strategies``).

One process (a batch of 4), DDP and FSDP on 2 gloo processes (2 each: the same global batch), the real CLI,
fp32: each trains 4 steps with a checkpoint at step 2 (``STRATEGY``), and each of those checkpoints resumes
under each strategy for the last 2 steps (``SOURCE_to_TARGET``). Then two resumes that must be refused
(``REFUSED``), and DDP and FSDP with compiled towers (``COMPILED``). 14 fits of a few steps: ``tests/helpers/cli_plan.py`` forks them from two processes that
import the package once.
"""

from __future__ import annotations

from pathlib import Path

from mulclip_pl.data.synthlong.generator import generate
from tests.conftest import TEST_MODEL
from tests.helpers.cli_plan import run_plan

FSDP = ["--config", "configs/strategies/fsdp.yaml", "--trainer.strategy.class_path", "tests.fsdp_cpu.CPUFSDPStrategy"]
STRATEGIES = {"single": ["--trainer.devices", "1", "--data.batch_size", "4"],
              "ddp": ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--data.batch_size", "2"],
              "fsdp": [*FSDP, "--trainer.devices", "2", "--data.batch_size", "2"]}
PROCESSES = {"single": 1, "ddp": 2, "fsdp": 2}
COMPILED = ["--model.compile", "true", "--trainer.callbacks+", "tests.callbacks.CompileCounts"]
STEPS, MID_RUN = 4, 2
# name: (strategy, the run whose last.ckpt `--ckpt_path last` finds, what differs)
REFUSED = {"refused_preset": ("fsdp", "fsdp_to_fsdp", ["--model.preset", "global_only"]),
           "refused_shape": ("ddp", "ddp_to_ddp", ["--model.calibrated_tokens", "7"])}


def run_strategies(root: Path) -> dict[str, dict]:
    """Every fit in ``root / NAME`` (its checkpoints in ``ckpt/``); per name, each rank's exit status and rank
    0's stderr. The training data: ``root / "data" / "train.jsonl"``, 16 samples."""
    train = generate(root / "data", image_size=32, sizes={"train": 16}) / "train.jsonl"
    calls = [(name, PROCESSES[name], _fit(root, name, train, name, "--checkpoint.every_n_train_steps", str(MID_RUN),
                                          "--checkpoint.save_top_k", "-1")) for name in STRATEGIES]
    for source in STRATEGIES:
        mid_run = root / source / "ckpt" / f"epoch=0-step={MID_RUN}.ckpt"
        calls += [(f"{source}_to_{target}", PROCESSES[target],
                   _fit(root, f"{source}_to_{target}", train, target, "--ckpt_path", str(mid_run)))
                  for target in STRATEGIES]
    calls += [(f"{name}_compiled", PROCESSES[name], _fit(root, f"{name}_compiled", train, name, *COMPILED))
              for name in ("ddp", "fsdp")]  # tests/test_fsdp.py: compiled towers train like eager ones
    for name, (strategy, run, change) in REFUSED.items():
        calls.append((name, PROCESSES[strategy], _fit(root, name, train, strategy, "--ckpt_path", "last",
                                                      "--checkpoint.dirpath", str(root / run / "ckpt"), *change)))
    return run_plan(calls, root / "plan")


def _fit(root: Path, name: str, train: Path, strategy: str, *extra: str) -> list[str]:
    return ["fit", "--model.model_name", TEST_MODEL, "--model.lr", "1e-3", "--model.head_lr", "1e-3",
            "--model.warmup_steps", "1", "--seed_everything", "0", "--data", "GenericCaptions",
            "--data.train_file", str(train), "--data.num_workers", "0", "--data.max_sentences", "2",
            *STRATEGIES[strategy], "--trainer.max_steps", str(STEPS), "--trainer.accelerator", "cpu",
            "--trainer.precision", "32-true", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false", "--trainer.default_root_dir", str(root / name),
            "--checkpoint.dirpath", str(root / name / "ckpt"), *extra]
