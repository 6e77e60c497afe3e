"""The optimizer state keyed by name (``training/optimizer_state.py``): files of before still resume, told apart
by their keys, and a checkpoint that cannot resume is refused in one line (``module/resume_check.py``), by the
CLI before anything loads too. The strategies themselves: ``tests/test_resume_matrix.py``."""

from itertools import chain
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.trainer.states import TrainerFn

from mulclip_pl.cli import main
from mulclip_pl.data.synthlong.generator import generate
from mulclip_pl.errors import ResumeError
from mulclip_pl.module import MulCLIP
from mulclip_pl.module.resume_check import check_resumable, optimizer_groups
from mulclip_pl.training.optim import param_groups
from mulclip_pl.training.optimizer_state import (
    IN_MODEL, IN_OPTIMIZER, NAMES, by_name, by_position, keying, names_in_model,
)
from tests.conftest import TEST_MODEL
from tests.helpers.strategy_runs import FSDP


@pytest.fixture(scope="module")
def trained():
    """A module, its AdamW after 2 steps, and that optimizer's ``state_dict()`` (keyed by place, as torch keys it)."""
    torch.manual_seed(0)
    module = MulCLIP(model_name=TEST_MODEL, lr=1e-3, head_lr=1e-3)
    optimizer = torch.optim.AdamW(param_groups(module, 1e-3, 1e-3, 0.01))
    for _ in range(2):
        for param in module.parameters():
            param.grad = torch.randn_like(param)
        optimizer.step()
    return module, optimizer, optimizer.state_dict()


def _in_model(named: dict, module) -> dict:
    """A state as Lightning's full FSDP file kept it before (``FSDP.rekey_optim_state_dict``, PARAM_ID)."""
    place = {name: index for index, name in enumerate(names_in_model(module))}
    return {"state": {place[name]: value for name, value in named["state"].items()},
            "param_groups": [{**group, "params": [place[name] for name in group["params"]]}
                             for group in named["param_groups"]]}


def _fitting(module, path: str = "x.ckpt") -> None:
    module._trainer = SimpleNamespace(state=SimpleNamespace(fn=TrainerFn.FITTING), strategy=None, ckpt_path=path,
                                      global_rank=0, world_size=1, optimizers=[])


def test_every_keying_is_told_apart_and_names_the_same_moments(trained):
    module, optimizer, positional = trained
    groups = optimizer_groups(module)
    named = by_name(positional, list(chain(*groups)), names_in_model(module))
    assert keying(positional) == IN_OPTIMIZER and keying(named) == NAMES
    assert named["state"]["backbone.clip.visual.proj"]["exp_avg"] is positional["state"][
        list(chain(*groups)).index("backbone.clip.visual.proj")]["exp_avg"]
    old_fsdp = _in_model(named, module)
    assert keying(old_fsdp) == IN_MODEL  # decay and no-decay parameters interleave in the model's order
    assert by_name(old_fsdp, list(chain(*groups)), names_in_model(module)) == named
    assert by_position(named, groups) == positional  # what torch reads back, exactly
    assert keying({"state": {}, "param_groups": []}) is None


@pytest.mark.parametrize("written", ["named", "old positional", "old FSDP"])
def test_a_one_process_resume_gives_torch_the_same_state_from_every_file(trained, written):
    module, optimizer, positional = trained
    named = by_name(positional, list(chain(*optimizer_groups(module))), names_in_model(module))
    state = {"named": named, "old positional": positional, "old FSDP": _in_model(named, module)}[written]
    checkpoint = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                  "optimizer_states": [state]}
    _fitting(module)
    module.on_load_checkpoint(checkpoint)
    assert checkpoint["optimizer_states"] == [positional]
    fresh = torch.optim.AdamW(param_groups(module, 1e-3, 1e-3, 0.01))
    fresh.load_state_dict(checkpoint["optimizer_states"][0])
    for param in module.parameters():  # each parameter gets its own moments back
        assert torch.equal(fresh.state[param]["exp_avg_sq"], optimizer.state[param]["exp_avg_sq"])


def _named(trained) -> dict:
    module, _, positional = trained
    return by_name(positional, list(chain(*optimizer_groups(module))), names_in_model(module))


def _rename(state: dict, old: str, new: str) -> dict:
    return {"state": {(new if k == old else k): v for k, v in state["state"].items()},
            "param_groups": [{**g, "params": [new if p == old else p for p in g["params"]]}
                             for g in state["param_groups"]]}


@pytest.mark.parametrize("change, message", [
    ("renamed", r"cannot resume this optimizer: its optimizer state names 1 parameter\(s\) this model lacks "
                r"\(backbone.clip.visual.projection, \.\.\.\); it lacks 1 of this model's "
                r"\(backbone.clip.visual.proj, "),
    ("moved", r"cannot resume this optimizer: backbone.clip.visual.proj is in its optimizer's parameter group 1 here"),
    ("shape", r"holds another model: backbone.clip.visual.proj of shape \(64, 16\), \(64, 32\) here; resume with its "
              r"model arguments .* --model.init_from x.ckpt"),
    ("preset", r"holds another model: model.preset full \(checkpoint: global_only\); .*--model.init_from x.ckpt"),
    ("old positional under FSDP", r"keys its optimizer state by position \(written before issue #47\), .* resume it "
                                  r"once without FSDP .*; its next checkpoint resumes under FSDP"),
])
def test_what_cannot_resume_is_refused_with_the_fix(trained, change, message):
    module, _, positional = trained
    named = _named(trained)
    state_dict, hparams, state = dict(module.state_dict()), dict(module.hparams), named
    if change == "renamed":
        state = _rename(named, "backbone.clip.visual.proj", "backbone.clip.visual.projection")
    elif change == "moved":  # from the decay group into the no-decay one
        groups = [list(g["params"]) for g in named["param_groups"]]
        groups[0].remove("backbone.clip.visual.proj"), groups[1].append("backbone.clip.visual.proj")
        state = {**named, "param_groups": [{**g, "params": p} for g, p in zip(named["param_groups"], groups)]}
    elif change == "shape":
        state_dict["backbone.clip.visual.proj"] = torch.zeros(64, 16)
    elif change == "preset":
        hparams["preset"] = "global_only"
    else:
        state = positional
    checkpoint = {"state_dict": state_dict, "hyper_parameters": hparams, "optimizer_states": [state]}
    with pytest.raises(ResumeError, match=message):
        check_resumable(module, checkpoint, "x.ckpt", sharded=change.endswith("FSDP"))


@pytest.mark.parametrize("strategy", ["single", "fsdp"])
def test_the_cli_refuses_an_optimizer_of_other_names_in_one_line_before_fit(trained, tmp_path, strategy, capsys):
    module, _, _ = trained
    renamed = _rename(_named(trained), "backbone.clip.visual.proj", "backbone.clip.visual.projection")
    ckpt = tmp_path / "renamed.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                "optimizer_states": [renamed], "epoch": 0, "global_step": 2}, ckpt)
    train = generate(tmp_path / "data", image_size=32, sizes={"train": 4}) / "train.jsonl"
    devices = ["--trainer.devices", "1"] if strategy == "single" else [*FSDP, "--trainer.devices", "2"]
    with pytest.raises(SystemExit) as refused:  # main() prints USER_ERRORS as one line, without a traceback
        main(["fit", "--data", "GenericCaptions", "--data.train_file", str(train), "--data.num_workers", "0",
              *devices, "--trainer.accelerator", "cpu", "--trainer.precision", "32-true", "--trainer.logger", "false",
              "--trainer.max_steps", "4",
              "--trainer.default_root_dir", str(tmp_path / "run"), "--ckpt_path", str(ckpt)])
    assert str(refused.value.code).startswith(f"mulclip-pl: error: --ckpt_path {ckpt} cannot resume this optimizer: "
                                              "its optimizer state names 1 parameter(s) this model lacks")
    assert "\n" not in str(refused.value.code) and not (tmp_path / "run").exists()  # refused before the fit began
