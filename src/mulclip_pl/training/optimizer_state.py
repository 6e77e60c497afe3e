"""AdamW's state in a checkpoint keyed by parameter name, so that it resumes under any strategy (issue #47).

torch's ``Optimizer.state_dict`` numbers each parameter by its place in the optimizer's groups (one
process, DDP); Lightning's full FSDP file numbers it by its place in the wrapped model's ``parameters()``
(``FSDP.rekey_optim_state_dict``). Read under the other strategy, the same number is another parameter:
a DDP resume of an FSDP file diverged to NaN, an FSDP resume of a DDP file stopped on a shape error.
Checkpoints now hold the form that ``FSDP.optim_state_dict`` returns (and open_clip and
``torch.distributed.checkpoint.state_dict`` write): ``state`` and each group's ``params`` keyed by the
parameter's name in the unwrapped model. Lightning's FSDP strategy loads that form by name itself; for
one process and DDP, ``by_position`` turns it back into this optimizer's places before torch loads it.

Files written before are told apart by their keys (``keying``): names are this form; integers that
count 0, 1, 2, ... through the groups are places in the optimizer; other integers are places in the
model (an FSDP file). Both still resume where they did, and old FSDP files under one process or DDP too.
"""

from __future__ import annotations

from itertools import chain
from typing import Any

from torch import nn

from mulclip_pl.training.optim import clean_name, owned_parameters

NAMES, IN_OPTIMIZER, IN_MODEL = "names", "places in the optimizer", "places in the model"


def keying(state: dict[str, Any]) -> str | None:
    """How ``state`` (one optimizer's) names its parameters: ``NAMES``, ``IN_OPTIMIZER``, ``IN_MODEL``, or
    None when it names none."""
    listed = [p for group in state.get("param_groups", []) for p in group["params"]]
    keys = [*state.get("state", {}), *listed]
    if not keys:
        return None
    if all(isinstance(key, str) for key in keys):
        return NAMES
    return IN_OPTIMIZER if listed == list(range(len(listed))) else IN_MODEL


def by_name(state: dict[str, Any], in_optimizer: list[str], in_model: list[str]) -> dict[str, Any]:
    """``state`` keyed by parameter name; ``in_optimizer`` / ``in_model``: the names in the optimizer's
    and in the model's order, for integer keys of either kind. Raises ValueError when there are more
    integers than names (a checkpoint of a larger model)."""
    kind = keying(state)
    if kind in (None, NAMES):
        return state
    order = in_optimizer if kind == IN_OPTIMIZER else in_model
    listed = [p for group in state["param_groups"] for p in group["params"]]
    if max(listed, default=-1) >= len(order) or len(listed) != len(in_optimizer):
        raise ValueError(f"its optimizer state holds {len(listed)} parameters, this model's optimizer "
                         f"{len(in_optimizer)}")
    return {**state, "state": {order[key]: value for key, value in state["state"].items()},
            "param_groups": [{**group, "params": [order[p] for p in group["params"]]}
                             for group in state["param_groups"]]}


def difference(state: dict[str, Any], groups: list[list[str]]) -> str | None:
    """What keeps a state keyed by name from this optimizer's ``groups`` (names per group), or None."""
    saved = [group["params"] for group in state.get("param_groups", [])]
    if len(saved) != len(groups):
        return f"its optimizer has {len(saved)} parameter groups, this run's {len(groups)}"
    names, here = set(chain(*saved)), set(chain(*groups))
    if names != here:
        extra, missing = sorted(names - here), sorted(here - names)
        parts = []
        if extra:
            parts.append(f"its optimizer state names {len(extra)} parameter(s) this model lacks ({extra[0]}, ...)")
        if missing:
            parts.append(f"it lacks {len(missing)} of this model's ({missing[0]}, ...)")
        return "; ".join(parts)
    for index, (old, new) in enumerate(zip(saved, groups)):
        moved = sorted(set(new) - set(old))
        if moved:
            return f"{moved[0]} is in its optimizer's parameter group {index + 1} here, another one there"
    return None


def by_position(state: dict[str, Any], groups: list[list[str]]) -> dict[str, Any]:
    """A state keyed by name as torch's ``Optimizer.load_state_dict`` reads it for these ``groups``: each
    name at its place in them. The names must be those of ``groups``, group by group (``difference``)."""
    if keying(state) != NAMES:
        return state
    place = {name: index for index, name in enumerate(chain(*groups))}
    return {**state, "state": {place[name]: value for name, value in state["state"].items()},
            "param_groups": [{**saved, "params": [place[name] for name in names]}
                             for saved, names in zip(state["param_groups"], groups)]}


def names_in_model(module: nn.Module) -> list[str]:
    """The parameters' names in ``module.parameters()`` order, without wrapper segments (FSDP's ids)."""
    return [clean_name(name) for name, _ in module.named_parameters()]


def names_in_optimizer(module: nn.Module, groups: list[dict[str, Any]]) -> list[list[str]]:
    """The names of the parameters of ``groups`` (an optimizer's ``param_groups``), group by group."""
    name = {id(param): clean for clean, _, _, param in owned_parameters(module)}
    return [[name[id(param)] for param in group["params"]] for group in groups]
