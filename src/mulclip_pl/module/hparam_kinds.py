"""What a model argument given beside ``--ckpt_path`` does (issue #50): the one table of kinds and their rules.

Lightning lays the hyper-parameters saved in a checkpoint over the parsed configuration. The CLI
(``MulCLIPCLI._parse_ckpt_path``) then puts back every argument given on the command line or in a
``--config`` file, by kind; an argument not given keeps the checkpoint's value.

- ``runtime``: how the same computation runs. The given value takes effect.
- ``optimisation``: what training minimises and how fast. The given value trains from the resumed
  step (``use_configured_rates`` replaces the rates the optimizer and schedule restore). None is
  refused: none changes a weight, and a new value on resume (a lower lr after a spike) is why one
  resumes with a flag; ``--model.init_from`` would drop the optimizer moments and the schedule.
  Except that ``preset`` and ``lambda_word`` also decide which calibration heads exist: a value that
  adds or removes a head is refused as an architecture change.
- ``architecture``: what the weights are. A value that differs from the checkpoint's is refused
  before anything runs; an equal one passes silently.
- ``start``: where the first weights come from. Not read under ``--ckpt_path`` (the checkpoint
  holds the weights); a value that differs from the checkpoint's is named in a warning.

A new argument of ``MulCLIP.__init__`` needs a row here (tests/test_ckpt_path_precedence.py).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from mulclip_pl.errors import HyperParameterError
from mulclip_pl.module.hparams import PRESETS_WITH_WPR

RUNTIME, OPTIMISATION, ARCHITECTURE, START = "runtime", "optimisation", "architecture", "start"

KINDS: dict[str, str] = {
    # runtime: the same computation, run another way
    "grad_checkpointing": RUNTIME, "encode_chunk": RUNTIME, "max_nonfinite_steps": RUNTIME,
    "trust_pickle": RUNTIME, "cache_dir": RUNTIME, "eval_ties": RUNTIME,
    "compile": RUNTIME, "compile_mode": RUNTIME, "compile_dynamic": RUNTIME,  # same weights (tests/test_compile.py)
    # optimisation: applied from the resumed step (preset, lambda_word: unless the heads change)
    "lr": OPTIMISATION, "head_lr": OPTIMISATION, "weight_decay": OPTIMISATION, "warmup_steps": OPTIMISATION,
    "word_warmup_steps": OPTIMISATION, "preset": OPTIMISATION, "long_weight": OPTIMISATION,
    "short_weight": OPTIMISATION, "lambda_global": OPTIMISATION, "lambda_word": OPTIMISATION,
    "lambda_sub": OPTIMISATION, "tau_r": OPTIMISATION, "tau_w": OPTIMISATION, "tau_s": OPTIMISATION,
    "sap_top_k_fraction": OPTIMISATION, "sentence_features": OPTIMISATION,
    "identical_texts_as_negatives": OPTIMISATION, "max_logit_scale": OPTIMISATION, "wpr_patch_block": OPTIMISATION,
    "patch_tokens": OPTIMISATION,
    # architecture: what the weights are
    "model_name": ARCHITECTURE, "context_length": ARCHITECTURE, "keep_positions": ARCHITECTURE,
    "position_scheme": ARCHITECTURE, "calibrated_tokens": ARCHITECTURE, "calibration_hidden_ratio": ARCHITECTURE,
    "calibration": ARCHITECTURE,
    # start: the weights a new run starts from (--ckpt_path replaces them)
    "pretrained": START, "init_from": START,
}
HEAD_ARGUMENTS = ("preset", "lambda_word")  # optimisation arguments that also decide which heads exist


def reconcile(given: Mapping[str, Any], saved: Mapping[str, Any], path: str) -> tuple[dict[str, Any], list[str]]:
    """The given model arguments that win over the checkpoint's ``saved`` hyper-parameters (all of them,
    once Lightning laid them over the configuration), and one warning per ``start`` argument not read.
    Raises ``HyperParameterError`` (one line, every refused argument) for a changed architecture."""
    wins, refused, notes = {}, [], []
    for key, value in given.items():
        kind = KINDS.get(key, ARCHITECTURE)  # unknown: the safe side
        if key not in saved or saved[key] == value:
            continue
        if kind == ARCHITECTURE:
            refused.append(f"model.{key} {_show(value)} differs from the checkpoint's {_show(saved[key])}")
        elif kind == START:
            notes.append(f"model.{key} {_show(value)} is not read: the weights come from --ckpt_path {path}")
        else:
            wins[key] = value
    if _heads({**saved, **wins}) != _heads(saved):
        changed = [key for key in HEAD_ARGUMENTS if key in wins]
        refused += [f"model.{key} {_show(wins[key])} differs from the checkpoint's {_show(saved[key])} and "
                    f"changes which calibration heads exist" for key in changed]
    if refused:
        raise HyperParameterError(
            f"{'; '.join(refused)}: the weights in --ckpt_path {path} were built with the checkpoint's value; "
            f"leave the argument out to use it, or start a new run from those weights with --model.init_from {path}")
    return wins, notes


def architecture_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Each architecture argument of this run that differs from the checkpoint's ``saved`` one, and a
    change of the calibration heads (``preset``, ``lambda_word``), as ``model.KEY VALUE (checkpoint: SAVED)``."""
    keys = [key for key, kind in KINDS.items() if kind == ARCHITECTURE]
    if _heads({**saved, **current}) != _heads(saved):
        keys += list(HEAD_ARGUMENTS)
    return [f"model.{key} {_show(current[key])} (checkpoint: {_show(saved[key])})"
            for key in keys if key in saved and key in current and saved[key] != current[key]]


def _heads(hp: Mapping[str, Any]) -> tuple[bool, bool] | None:
    """(image head, text head) that ``MulCLIP`` builds for these arguments (None if some are unknown)."""
    if not all(key in hp for key in ("preset", "lambda_word", "calibration")):
        return None
    wpr = hp["preset"] in PRESETS_WITH_WPR and hp["lambda_word"] > 0
    return wpr and hp["calibration"] in ("both", "image"), wpr and hp["calibration"] == "both"


def _show(value: Any) -> str:
    return "null" if value is None else str(value)


def use_configured_rates(module: Any) -> None:
    """At the start of a fit: the optimizer's and schedule's rates are the run's ``lr``, ``head_lr`` and
    ``weight_decay``. A resumed fit restores those of the checkpoint's run; the schedule's base rates,
    each group's rate at the resumed step and its weight decay are replaced here, so a new value given
    on resume really trains. With unchanged values this writes the numbers already there (bit-exact)."""
    configs = module.trainer.lr_scheduler_configs
    schedule = configs[0].scheduler if configs else None
    if not isinstance(schedule, torch.optim.lr_scheduler.LambdaLR):
        return
    hp, groups = module.hparams, schedule.optimizer.param_groups
    rates, decays = [hp.lr, hp.lr, hp.head_lr], [hp.weight_decay, 0.0, hp.weight_decay]  # optim.param_groups' order
    if len(groups) not in (2, 3):  # not our optimizer (e.g. LightningCLI's --optimizer)
        return
    schedule.base_lrs = rates[: len(groups)]
    for group, rate, decay, factor in zip(groups, rates, decays, schedule.lr_lambdas):
        group["initial_lr"], group["weight_decay"] = rate, decay
        group["lr"] = rate * factor(schedule.last_epoch)
    schedule._last_lr = [group["lr"] for group in groups]
