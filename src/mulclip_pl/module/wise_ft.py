"""``mulclip-pl wise-ft``: a fine-tuned model's CLIP towers averaged, weight by weight, with the towers it
started from (WiSE-FT: Wortsman et al., "Robust fine-tuning of zero-shot models", CVPR 2022).

Why: fine-tuning on one domain's long captions moves the towers away from what the start model knew,
and a model that gains in its own domain can lose in the next one. Averaging the two sets of weights
keeps much of both: on the demo (docs/EXPERIMENTS.md) it lifts cross-domain R@1 above both the start
and the fine-tuned model, at some in-domain cost. ``alpha`` says how far to go (choose it on val).

The start is rebuilt the way the fit built it: ``MulCLIP(**the run's arguments)`` reads its
``init_from`` / ``pretrained`` file again, so a 77-position start is stretched to 248 exactly as the run
began, and the average is taken between two models of one shape. The output is the fine-tuned run's
checkpoint with averaged towers and no optimizer state: ``mulclip-pl test --ckpt_path``, ``export`` and
``mulclip_pl.load`` take it like any other; a fit cannot resume from it (``--model.init_from`` starts one).
The training-only calibration heads are the fine-tuned ones (the start may have none).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from mulclip_pl.errors import HyperParameterError, PretrainedWeightsError
from mulclip_pl.module.mulclip import MulCLIP
from mulclip_pl.weights.checkpoints import SafeCheckpointIO, load_checkpoint_dict

TOWERS = "backbone."  # the CLIP towers and logit scale; heads and anything else stay fine-tuned
TRAINING_STATE = ("optimizer_states", "lr_schedulers", "loops", "callbacks")  # what resumes a fit
log = logging.getLogger(__name__)


def wise_ft(*, ckpt: str, out: str, alpha: float = 0.5, start: str | None = None, trust_pickle: bool = False) -> Path:
    """Write ``alpha`` x the fine-tuned towers + (1 - ``alpha``) x the start towers as a checkpoint.

    Args:
        ckpt: the fine-tuned model: a checkpoint written by ``mulclip-pl fit``.
        out: the checkpoint to write (e.g. ``runs/demo/stage2/wise.ckpt``).
        alpha: weight of the fine-tuned towers: 1 gives ``ckpt``'s towers, 0 the start's.
        start: the file the fit started from; default the run's own ``init_from`` (or ``pretrained``).
            Give it when that file has moved; it must be the same model the run started from.
        trust_pickle: read files that need full unpickling (only files you trust).
    """
    if not 0.0 <= alpha <= 1.0:
        raise HyperParameterError(f"--alpha {alpha}: the fine-tuned towers' weight must lie in [0, 1] "
                                  "(1 = the fine-tuned model, 0 = its start)")
    checkpoint = load_checkpoint_dict(ckpt, trust_pickle=trust_pickle)
    arguments = {k: v for k, v in checkpoint.get("hyper_parameters", {}).items() if not k.startswith("_")}
    key = "init_from" if arguments.get("init_from") or not arguments.get("pretrained") else "pretrained"
    source = start or arguments.get(key)
    if not source:
        raise PretrainedWeightsError(f"{ckpt} was trained from random initialisation: there is no start model to "
                                     "average with (give one with --start FILE)")
    if not Path(source).expanduser().is_file():
        raise PretrainedWeightsError(f"the start model {source} of {ckpt} is not a file here; give it with "
                                     "--start FILE (the file the fit started from)")
    try:
        begin = MulCLIP(**{**arguments, "init_from": None, "pretrained": None, key: str(source),
                           "trust_pickle": trust_pickle}).state_dict()
    except PretrainedWeightsError as exc:
        raise PretrainedWeightsError(f"could not rebuild the start of {ckpt} from {source} (give --start the file "
                                     f"the fit started from): {exc}") from None
    checkpoint["state_dict"] = average_towers(checkpoint["state_dict"], begin, alpha, str(source))
    for entry in TRAINING_STATE:
        checkpoint.pop(entry, None)
    checkpoint["wise_ft"] = {"alpha": alpha, "start": str(source), "finetuned": str(ckpt)}
    target = Path(out).expanduser()
    SafeCheckpointIO().save_checkpoint(checkpoint, target)
    log.info("wise-ft: %s = %.2f x %s + %.2f x %s", target, alpha, ckpt, 1 - alpha, source)
    return target


def average_towers(finetuned: dict[str, torch.Tensor], start: dict[str, torch.Tensor], alpha: float,
                   source: str) -> dict[str, torch.Tensor]:
    """``finetuned`` with each floating tower tensor moved to ``start + alpha (finetuned - start)``."""
    averaged = dict(finetuned)
    for name, value in finetuned.items():
        if not name.startswith(TOWERS) or not value.is_floating_point():
            continue
        if name not in start or start[name].shape != value.shape:
            found = tuple(start[name].shape) if name in start else "nothing"
            raise PretrainedWeightsError(f"the start model {source} holds {found} for {name} of shape "
                                         f"{tuple(value.shape)}: it is not the model this run started from")
        averaged[name] = torch.lerp(start[name].to(value.dtype), value, alpha)
    return averaged
