"""Whether a checkpoint can resume this fit, decided before any of it is loaded (issue #47).

Lightning loads ``--ckpt_path`` in an order that depends on the strategy: one process and DDP hand the
file to ``on_load_checkpoint`` before the weights and the optimizer take it; FSDP loads both itself,
before any hook of the module runs, and fails with a traceback. So ``MulCLIPCLI.before_fit`` checks the
file before ``fit`` starts (any strategy), and ``on_load_checkpoint`` checks it again for one-process
and DDP fits started from Python (an FSDP fit started so meets Lightning's own error). Refused in one
line, with the fix: weights without an optimizer state, another model (an architecture argument, the heads a preset builds, a weight's name
or shape), an optimizer state whose parameter names are not this optimizer's, and, under FSDP, a file
written before the optimizer state was keyed by name.
"""

from __future__ import annotations

from itertools import chain
from typing import Any

import torch
from lightning.pytorch.strategies import FSDPStrategy
from torch import nn

from mulclip_pl.errors import ResumeError
from mulclip_pl.module.hparam_kinds import architecture_differences
from mulclip_pl.training.optim import param_groups
from mulclip_pl.training.optimizer_state import (
    IN_OPTIMIZER, by_name, difference, keying, names_in_model, names_in_optimizer,
)


def check_resumable(module: nn.Module, checkpoint: dict[str, Any], path: str, sharded: bool) -> list[dict[str, Any]]:
    """Its optimizer states keyed by name, if ``checkpoint`` (read from ``path``) can resume a fit of ``module``;
    else raises ``ResumeError``. ``sharded``: the fit runs under FSDP (``is_sharded``)."""
    model = _model_difference(module, checkpoint)
    if model:
        raise ResumeError(f"--ckpt_path {path} holds another model: {model}; resume with its model arguments (given "
                          f"the file itself rather than `last`, the CLI reads them from it), or start a new run from "
                          f"its weights with --model.init_from {path}")
    if "optimizer_states" not in checkpoint:
        raise ResumeError(f"--ckpt_path {path} holds weights only, no optimizer state (e.g. a `mulclip-pl wise-ft` "
                          f"average): start a new run from its weights with --model.init_from {path}")
    states = checkpoint["optimizer_states"]
    if sharded and any(keying(state) == IN_OPTIMIZER for state in states):
        raise ResumeError(f"--ckpt_path {path} keys its optimizer state by position (written before issue #47), "
                          "which FSDP reads as positions in the model: resume it once without FSDP (one process or "
                          "--trainer.strategy ddp, the same global batch); its next checkpoint resumes under FSDP")
    return [named_optimizer_state(module, state, path) for state in states]


def is_sharded(strategy: Any) -> bool:
    """Whether Lightning loads the checkpoint itself, before the module's hooks (FSDP)."""
    return isinstance(strategy, FSDPStrategy)


def named_optimizer_state(module: nn.Module, state: dict[str, Any], path: str) -> dict[str, Any]:
    """``state`` keyed by name (``training/optimizer_state.py``), once its names are this optimizer's."""
    groups = optimizer_groups(module)
    try:
        named = by_name(state, list(chain(*groups)), names_in_model(module))
    except ValueError as exc:
        named, problem = None, str(exc)
    else:
        problem = difference(named, groups)
    if problem:
        raise ResumeError(f"--ckpt_path {path} cannot resume this optimizer: {problem}; start a new run from its "
                          f"weights with --model.init_from {path} (the optimizer and schedule start afresh)")
    return named


def optimizer_groups(module: nn.Module) -> list[list[str]]:
    """The parameter names of each group of the fit's optimizer: its own once configured, else the groups
    ``configure_optimizers`` will give it (``training/optim.py``)."""
    trainer = getattr(module, "_trainer", None)
    optimizers = getattr(trainer, "optimizers", None)
    if optimizers:
        return names_in_optimizer(module, optimizers[0].param_groups)
    hp = module.hparams
    return names_in_optimizer(module, param_groups(module, hp.lr, hp.head_lr, hp.weight_decay))


def _model_difference(module: nn.Module, checkpoint: dict[str, Any]) -> str | None:
    """The architecture arguments that differ, else the first weight this model lacks, has in addition, or
    holds in another shape (1-element scalars load from 0-dim ones: ``weights/one_element.py``)."""
    arguments = architecture_differences(checkpoint.get("hyper_parameters", {}), module.hparams)
    if arguments:
        return ", ".join(arguments)
    saved, own = checkpoint.get("state_dict", {}), module.state_dict()
    for name in sorted(saved.keys() - own.keys()):
        return f"{name}, which this model lacks"
    for name in sorted(own.keys() - saved.keys()):
        return f"no {name}, which this model has"
    for name, value in saved.items():
        mine = own[name]
        if torch.is_tensor(value) and value.shape != mine.shape and not value.numel() == mine.numel() == 1:
            return f"{name} of shape {tuple(value.shape)}, {tuple(mine.shape)} here"
    return None
