"""The shipped ``configs/strategies/fsdp.yaml`` trains: 2 gloo processes, the real CLI, the shipped
settings (full sharding, auto-wrap and activation checkpointing per residual block) with only what
a CPU needs changed (fp32, ``tests/fsdp_cpu.py``). Its weights equal a DDP run of the same steps within
fp32 noise, also after a resume from its own checkpoint, and the FSDP checkpoint is read by
``mulclip_pl.load``, ``export`` and ``test``. With ``--model.compile`` (compiled blocks inside FSDP's wrapping and
activation checkpointing, or under DDP) each trains like its eager run. The fits are the resume matrix's
(``tests/test_resume_matrix.py``).
"""

import json

import lightning as L
import pytest
import torch

import mulclip_pl
from mulclip_pl.cli import main
from mulclip_pl.module import MulCLIP
from tests.conftest import TEST_MODEL
from tests.helpers.strategy_runs import MID_RUN, STEPS
from tests.helpers.updates import assert_trained_alike


@pytest.mark.parametrize("run", ["fsdp", "fsdp_to_fsdp"])  # straight, and resumed from its own step-2 checkpoint
def test_fsdp_trains_like_ddp_also_after_a_resume(strategy_runs, run):
    root, results = strategy_runs
    assert results[run]["code"] == [0, 0], results[run]["stderr"][-3000:]
    ddp, fsdp = (torch.load(root / name / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True)
                 for name in ("ddp", run))
    assert fsdp["global_step"] == ddp["global_step"] == STEPS
    assert ddp["state_dict"].keys() == fsdp["state_dict"].keys()
    for name, value in ddp["state_dict"].items():
        torch.testing.assert_close(fsdp["state_dict"][name], value, rtol=1e-4, atol=1e-6, msg=name)
    assert all(v.ndim > 0 for v in fsdp["state_dict"].values())  # FSDP shards no 0-dim parameter
    mid_run = torch.load(root / "fsdp" / "ckpt" / f"epoch=0-step={MID_RUN}.ckpt", map_location="cpu",
                         weights_only=True)["state_dict"]
    changed = [name for name, value in mid_run.items() if not torch.equal(value, fsdp["state_dict"][name])]
    assert "backbone.clip.positional_embedding_res" in changed and len(changed) > 20  # the last 2 steps trained


def test_an_fsdp_checkpoint_loads_exports_and_tests(strategy_runs, tmp_path):
    root, _ = strategy_runs
    ckpt = root / "fsdp" / "ckpt" / "last.ckpt"
    model, _, tokenizer = mulclip_pl.load(ckpt)
    main(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "export")])
    exported, _, _ = mulclip_pl.load(tmp_path / "export")
    tokens = tokenizer(["a long caption " * 30])
    with torch.no_grad():
        torch.testing.assert_close(exported.encode_text(tokens), model.encode_text(tokens))
    main(["test", "--model.model_name", TEST_MODEL, "--ckpt_path", str(ckpt), "--data", "GenericCaptions",
          "--data.test_file", str(root / "data" / "train.jsonl"), "--data.num_workers", "0",
          "--trainer.accelerator", "cpu", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
          "--trainer.default_root_dir", str(tmp_path / "test")])
    assert (tmp_path / "test" / "results.json").is_file()


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_a_compiled_fit_trains_like_eager_with_the_same_strategy(strategy_runs, strategy):
    """FSDP's: full sharding, auto-wrap and activation checkpointing of the (compiled) blocks."""
    root, results = strategy_runs
    assert results[f"{strategy}_compiled"]["code"] == [0, 0], results[f"{strategy}_compiled"]["stderr"][-3000:]
    eager, compiled = (torch.load(root / name / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True)
                       for name in (strategy, f"{strategy}_compiled"))
    assert compiled["global_step"] == STEPS and compiled["hyper_parameters"]["compile"] is True
    L.seed_everything(0)  # the CLI's seed, then its model: the weights both runs started from
    start = MulCLIP(model_name=TEST_MODEL).state_dict()
    assert_trained_alike(eager["state_dict"], compiled["state_dict"], start)
    for rank in (0, 1):  # one graph per tower, compiled once, on each rank
        counts = json.loads((root / f"{strategy}_compiled" / f"compile_counts_rank{rank}.json").read_text())
        assert 0 < counts["stats"]["unique_graphs"] <= 2 and not counts.get("graph_break"), counts
