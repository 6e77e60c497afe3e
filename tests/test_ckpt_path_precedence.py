"""Issue #50: a model argument given beside ``--ckpt_path`` (command line or --config) wins over the
checkpoint's saved value by its kind (src/mulclip_pl/module/hparam_kinds.py), or the run is refused in one line;
one not given comes from the checkpoint.

The CLI calls run in one subprocess: this file is also the driver (``python -m tests.test_ckpt_path_precedence
PLAN``), which imports the package once and forks one process per ``mulclip-pl`` call, with its own stdout,
stderr and exit status. Each test reads what actually ran: the run's config.yaml, the optimizer's rates
(a test-only callback), the checkpoint's schedule, the error's last line.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback

ROOT = Path(__file__).resolve().parents[1]
TRAINED = {"model_name": "mulclip-test", "lr": 1e-3, "head_lr": 2e-3, "weight_decay": 0.05, "warmup_steps": 1,
           "calibrated_tokens": 5, "lambda_word": 0.5}  # the checkpoint's run (--config model.yaml)
COMMON = ["--trainer.accelerator", "cpu", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
          "--trainer.enable_model_summary", "false"]


class RecordRates(Callback):
    """Test-only: appends each step's learning rates and weight decays, as the optimizer uses them, to ``path``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        groups = trainer.optimizers[0].param_groups
        with open(self.path, "a") as out:
            out.write(json.dumps({"step": trainer.global_step, "lr": [g["lr"] for g in groups],
                                  "weight_decay": [g["weight_decay"] for g in groups]}) + "\n")


def _plan(tmp: Path) -> dict[str, list[str]]:
    from mulclip_pl.data.synthlong.generator import generate

    synth = generate(tmp / "synth", image_size=32, sizes={"train": 4, "val": 4, "test": 4})
    model_yaml = tmp / "model.yaml"
    model_yaml.write_text(yaml.safe_dump({"model": TRAINED}))
    train = ["--data", "GenericCaptions", "--data.train_file", str(synth / "train.jsonl"), "--data.batch_size", "2",
             "--data.num_workers", "0", "--data.max_sentences", "2", "--trainer.max_steps", "3"]
    step1, last = tmp / "trained" / "ckpt" / "step=1.ckpt", tmp / "trained" / "ckpt" / "last.ckpt"

    def fit(name: str, *extra: str) -> list[str]:
        rates = json.dumps([{"class_path": "tests.test_ckpt_path_precedence.RecordRates",
                             "init_args": {"path": str(tmp / name / "rates.jsonl")}}])
        return ["fit", *COMMON, *train, "--trainer.default_root_dir", str(tmp / name), "--checkpoint.dirpath",
                str(tmp / name / "ckpt"), "--trainer.callbacks", rates, *extra]

    def score(subcommand: str, name: str, *extra: str) -> list[str]:
        split = "val_file" if subcommand == "validate" else "test_file"
        return [subcommand, *COMMON, "--data", "GenericCaptions", f"--data.{split}", str(synth / f"{split[:-5]}.jsonl"),
                "--data.num_workers", "0", "--trainer.default_root_dir", str(tmp / name), "--ckpt_path", str(last), *extra]

    every_step = ["--checkpoint.every_n_train_steps", "1", "--checkpoint.save_top_k", "-1", "--checkpoint.filename",
                  "{step}"]
    return {
        "trained": fit("trained", "--config", str(model_yaml), *every_step),
        "plain_resume": fit("plain_resume", "--config", str(model_yaml), *every_step, "--ckpt_path", str(step1)),
        "fit_changed": fit("fit_changed", "--ckpt_path", str(step1), "--model.encode_chunk", "1", "--model.lr", "5e-3",
                           "--model.head_lr", "7e-3", "--model.weight_decay", "0.2", "--model.lambda_sub", "0.25"),
        "fit_architecture": fit("fit_architecture", "--ckpt_path", str(step1), "--model.calibrated_tokens", "7"),
        # the config the checkpoint was trained with, plus a runtime and an optimisation change
        "test_changed": score("test", "test_changed", "--config", str(model_yaml), "--model.eval_ties",
                              "clip_benchmark", "--model.lr", "5e-3"),
        "test_architecture": score("test", "test_architecture", "--model.context_length", "100"),
        "validate_changed": score("validate", "validate_changed", "--model.encode_chunk", "3", "--model.tau_s", "0.5"),
        "validate_architecture": score("validate", "validate_architecture", "--model.preset", "global_only"),
        "predict_changed": score("predict", "predict_changed", "--model.eval_ties", "clip_benchmark",
                                 "--model.head_lr", "1e-2"),
        "predict_architecture": score("predict", "predict_architecture", "--model.model_name", "mulclip-tiny"),
    }


def _drive(plan_file: str) -> None:
    """Runs each call of the plan in a forked process (the package imported once), in order; writes its
    exit status and output files to ``results.json`` beside the plan."""
    from mulclip_pl.cli import main

    folder = Path(plan_file).parent
    plan, results = json.loads(Path(plan_file).read_text()), {}
    for name, argv in plan.items():
        out, err = folder / f"{name}.out", folder / f"{name}.err"
        pid = os.fork()
        if pid == 0:  # the child: `mulclip-pl ARGV` as the console script runs it
            os.dup2(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 1)
            os.dup2(os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
            sys.argv, code = ["mulclip-pl", *argv], 0
            try:
                main()
            except SystemExit as exc:  # what the interpreter does with it
                code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
                if not isinstance(exc.code, (int, type(None))):
                    print(exc.code, file=sys.stderr)
            except BaseException:
                traceback.print_exc()
                code = 1
            sys.stdout.flush(), sys.stderr.flush()
            os._exit(code)
        results[name] = {"code": os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), "out": str(out), "err": str(err)}
    (folder / "results.json").write_text(json.dumps(results))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("precedence")
    plan = tmp / "plan.json"
    plan.write_text(json.dumps(_plan(tmp)))
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "tests.test_ckpt_path_precedence", str(plan)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp / "results.json").read_text())
    return tmp, {name: {**r, "stderr": Path(r["err"]).read_text()} for name, r in results.items()}


def _ok(runs, name: str) -> dict:
    """The model section of the run's config.yaml, once it ran."""
    tmp, results = runs
    assert results[name]["code"] == 0, results[name]["stderr"][-3000:]
    return yaml.safe_load((tmp / name / "config.yaml").read_text())["model"]


def _refused(runs, name: str) -> str:
    """The error's last line, once the run was refused before anything ran."""
    tmp, results = runs
    stderr = results[name]["stderr"]
    assert results[name]["code"] == 1 and "Traceback" not in stderr, stderr[-3000:]
    assert not (tmp / name / "config.yaml").exists()
    return stderr.strip().splitlines()[-1]


def _rates(runs, name: str) -> dict[int, dict]:
    return {(r := json.loads(line))["step"]: r for line in (runs[0] / name / "rates.jsonl").read_text().splitlines()}


def _checkpoint(runs, name: str) -> dict:
    return torch.load(runs[0] / name / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True)


def test_plain_resume_is_not_refused_and_is_bit_exact(runs):
    assert _ok(runs, "plain_resume") == _ok(runs, "trained")
    resumed, uninterrupted = _checkpoint(runs, "plain_resume"), _checkpoint(runs, "trained")
    assert resumed["global_step"] == uninterrupted["global_step"] == 3
    for name, value in uninterrupted["state_dict"].items():
        assert torch.equal(resumed["state_dict"][name], value), name
    assert resumed["lr_schedulers"] == uninterrupted["lr_schedulers"]
    assert resumed["optimizer_states"][0]["param_groups"] == uninterrupted["optimizer_states"][0]["param_groups"]
    resumed_rates, rates = _rates(runs, "plain_resume"), _rates(runs, "trained")
    assert resumed_rates[1] == rates[1] and resumed_rates[2] == rates[2]  # from the resumed step on


def test_fit_resume_applies_runtime_and_optimisation_arguments(runs):
    model = _ok(runs, "fit_changed")
    assert (model["encode_chunk"], model["lr"], model["head_lr"], model["weight_decay"], model["lambda_sub"]) == \
        (1, 5e-3, 7e-3, 0.2, 0.25)
    assert {key: model[key] for key in TRAINED} == {**TRAINED, "lr": 5e-3, "head_lr": 7e-3, "weight_decay": 0.2}
    # warm-up 1 then cosine over 3 steps: factor 1 at the resumed step (1), 0.5 at step 2
    assert _rates(runs, "trained")[1]["lr"] == pytest.approx([1e-3, 1e-3, 2e-3])
    resumed = _rates(runs, "fit_changed")  # what the optimizer used, from the step after the resume
    assert resumed[1]["lr"] == pytest.approx([5e-3, 5e-3, 7e-3]) and resumed[1]["weight_decay"] == [0.2, 0.0, 0.2]
    assert resumed[2]["lr"] == pytest.approx([2.5e-3, 2.5e-3, 3.5e-3]) and resumed[2]["weight_decay"] == [0.2, 0.0, 0.2]
    assert _checkpoint(runs, "fit_changed")["lr_schedulers"][0]["base_lrs"] == [5e-3, 5e-3, 7e-3]


def test_fit_resume_refuses_an_architecture_change_in_one_line(runs):
    line = _refused(runs, "fit_architecture")
    assert line.startswith("mulclip-pl: error: model.calibrated_tokens 7 differs from the checkpoint's 5")
    assert "--model.init_from" in line and "step=1.ckpt" in line


@pytest.mark.parametrize("name, expected", [
    ("test_changed", {"eval_ties": "clip_benchmark", "lr": 5e-3}),
    ("validate_changed", {"encode_chunk": 3, "tau_s": 0.5}),
    ("predict_changed", {"eval_ties": "clip_benchmark", "head_lr": 1e-2}),
])
def test_evaluation_applies_runtime_and_optimisation_arguments(runs, name, expected):
    model = _ok(runs, name)
    assert {key: model[key] for key in expected} == expected
    assert {key: model[key] for key in TRAINED} == {**TRAINED, **{k: v for k, v in expected.items() if k in TRAINED}}
    written = list((runs[0] / name).rglob("embeddings.parquet" if name.startswith("predict") else "results.json"))
    assert written


@pytest.mark.parametrize("name, expected", [
    ("test_architecture", "model.context_length 100 differs from the checkpoint's 248"),
    ("validate_architecture", "model.preset global_only differs from the checkpoint's full and changes which "
                              "calibration heads exist"),
    ("predict_architecture", "model.model_name mulclip-tiny differs from the checkpoint's mulclip-test"),
])
def test_evaluation_refuses_an_architecture_change_in_one_line(runs, name, expected):
    line = _refused(runs, name)
    assert line.startswith(f"mulclip-pl: error: {expected}") and "--model.init_from" in line


# ---------------------------------------------------------------- the table and its rules, in-process
def test_every_model_argument_has_a_kind():
    from mulclip_pl.module.hparam_kinds import KINDS
    from mulclip_pl.module import MulCLIP

    arguments = set(inspect.signature(MulCLIP.__init__).parameters) - {"self"}
    assert set(KINDS) == arguments, f"no kind: {sorted(arguments - set(KINDS))}; not an argument: " \
                                    f"{sorted(set(KINDS) - arguments)}"


def _defaults() -> dict:
    from mulclip_pl.module import MulCLIP

    return {k: p.default for k, p in inspect.signature(MulCLIP.__init__).parameters.items() if k != "self"}


def test_the_shipped_stage2_config_passes_on_its_own_checkpoint_and_is_judged_on_another():
    from mulclip_pl.module.hparam_kinds import reconcile
    from mulclip_pl.errors import HyperParameterError

    given = yaml.safe_load((ROOT / "configs" / "synthlong" / "stage2.yaml").read_text())["model"]
    assert reconcile(given, {**_defaults(), **given}, "x.ckpt") == ({}, [])  # trained with it: nothing to say
    other = {**_defaults(), **given, "lr": 1e-3, "lambda_sub": 0.5, "init_from": "elsewhere.ckpt"}
    wins, notes = reconcile(given, other, "x.ckpt")
    assert wins == {"lr": 5e-4, "lambda_sub": 0.1}  # optimisation: the config's values train
    assert notes == ["model.init_from runs/demo/stage1/last.ckpt is not read: the weights come from --ckpt_path x.ckpt"]
    with pytest.raises(HyperParameterError, match="model.preset full differs from the checkpoint's global_only"):
        reconcile(given, {**other, "preset": "global_only"}, "x.ckpt")  # a global-only arm has no WPR heads


def test_head_arguments_pass_while_the_heads_stay():
    from mulclip_pl.module.hparam_kinds import reconcile
    from mulclip_pl.errors import HyperParameterError

    saved = _defaults()
    assert reconcile({"lambda_word": 0.02, "preset": "no_sap"}, saved, "x") == ({"lambda_word": 0.02, "preset": "no_sap"}, [])
    with pytest.raises(HyperParameterError, match="model.lambda_word 0 differs"):
        reconcile({"lambda_word": 0}, saved, "x")  # WPR off: no calibration heads
    assert reconcile({"lambda_word": 0}, {**saved, "preset": "global_only"}, "x") == ({"lambda_word": 0}, [])


def test_every_architecture_argument_given_differently_is_refused_and_equal_ones_pass():
    from mulclip_pl.module.hparam_kinds import ARCHITECTURE, KINDS, reconcile
    from mulclip_pl.errors import HyperParameterError

    saved = _defaults()
    for key in (k for k, kind in KINDS.items() if kind == ARCHITECTURE):
        assert reconcile({key: saved[key]}, saved, "x") == ({}, [])
        with pytest.raises(HyperParameterError, match=f"^model.{key} "):
            reconcile({key: "other"}, saved, "x")


if __name__ == "__main__":
    _drive(sys.argv[1])
