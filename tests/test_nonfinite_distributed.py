"""A NaN loss on one rank at one step, under DDP and FSDP (2 gloo processes, the real CLI): every rank skips
that step together, nothing crashes, the skip is counted, and the weights equal a run in which that step's
update was undone (``tests/callbacks.py: UndoStep``), the schedule advancing as for any step.

One process returns None from ``training_step`` (tests/test_reliability.py); Lightning refuses that under
a distributed strategy, so there the ranks return a zero loss and drop the gradients before the optimizer
steps (``training/nonfinite.py``).
"""

import json
from pathlib import Path

import pytest
import torch

from mulclip_pl.data.synthlong.generator import generate
from tests.conftest import TEST_MODEL
from tests.helpers.cli_plan import run_plan

NAN_STEP, STEPS = 2, 4
DDP = ["--trainer.strategy", "ddp"]
FSDP = ["--config", "configs/strategies/fsdp.yaml", "--trainer.strategy.class_path", "tests.fsdp_cpu.CPUFSDPStrategy"]


def _fit(root: Path, train_file: Path, strategy: list[str], callback: dict) -> list[str]:
    return ["fit", "--model.model_name", TEST_MODEL, "--model.lr", "1e-3", "--model.head_lr", "1e-3",
            "--model.warmup_steps", "1", "--model.max_nonfinite_steps", "2", "--seed_everything", "0",
            "--data", "GenericCaptions", "--data.train_file", str(train_file), "--data.batch_size", "2",
            "--data.num_workers", "0", "--data.max_sentences", "2", *strategy, "--trainer.max_steps", str(STEPS),
            "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.precision", "32-true",
            "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false", "--trainer.default_root_dir", str(root),
            "--checkpoint.dirpath", str(root / "ckpt"), "--checkpoint.every_n_train_steps", "1",
            "--checkpoint.save_top_k", "-1", "--trainer.callbacks", json.dumps([callback])]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The three fits, forked from two processes that import the package once (``tests/helpers/cli_plan.py``)."""
    root = tmp_path_factory.mktemp("nonfinite")
    train = generate(root / "data", image_size=32, sizes={"train": 16}) / "train.jsonl"
    def nan_on(rank: int) -> dict:
        return {"class_path": "tests.callbacks.NaNLossAt", "init_args": {"step": NAN_STEP, "rank": rank}}

    results = run_plan([
        ("ddp", 2, _fit(root / "ddp", train, DDP, nan_on(1))),  # not the logging rank
        ("fsdp", 2, _fit(root / "fsdp", train, FSDP, nan_on(0))),
        ("undone", 2, _fit(root / "undone", train, DDP,
                           {"class_path": "tests.callbacks.UndoStep", "init_args": {"step": NAN_STEP}}))],
        root / "plan")
    for name, result in results.items():
        assert result["code"] == [0, 0], f"{name}: {result['stderr'][-3000:]}"
    return root


def _checkpoint(run: Path, steps: int | None = None) -> dict:
    (path,) = run.glob(f"ckpt/*step={steps}.ckpt") if steps is not None else [run / "ckpt" / "last.ckpt"]
    return torch.load(path, map_location="cpu", weights_only=True)


def _assert_same(a, b, where: str = "") -> None:
    """Equal to the bit: tensors, and dicts / lists of them (optimizer states)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}/{i}")
    elif torch.is_tensor(a):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_a_nan_loss_on_one_rank_skips_the_step_on_every_rank(runs, strategy):
    run = runs / strategy
    before, after, last = _checkpoint(run, NAN_STEP), _checkpoint(run, NAN_STEP + 1), _checkpoint(run)
    assert last["global_step"] == STEPS  # trained to the end: the skipped step counts as a step
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values())
    # The skipped step moved nothing: not the weights, nor AdamW's moments and step counts (the steps before set them).
    _assert_same(after["state_dict"], before["state_dict"], "state_dict")
    moments = after["optimizer_states"][0]["state"]
    assert moments
    _assert_same(moments, before["optimizer_states"][0]["state"], "optimizer")
    assert after["lr_schedulers"][0]["last_epoch"] == before["lr_schedulers"][0]["last_epoch"] + 1  # the schedule moved
    proj = "backbone.clip.visual.proj"
    assert not torch.equal(last["state_dict"][proj], after["state_dict"][proj])  # the steps after it trained
    for rank in (0, 1):  # each rank's guard counted the one skip (train/nonfinite_skipped)
        assert json.loads((run / f"skipped_rank{rank}.json").read_text()) == 1.0

    undone = _checkpoint(runs / "undone")["state_dict"]
    for name, value in undone.items():  # DDP to the bit; FSDP within fp32 noise of DDP (tests/test_fsdp.py)
        tolerance = {"rtol": 0, "atol": 0} if strategy == "ddp" else {"rtol": 1e-4, "atol": 1e-6}
        torch.testing.assert_close(last["state_dict"][name], value, **tolerance, msg=name)
