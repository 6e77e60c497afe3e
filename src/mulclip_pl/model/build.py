"""Build open_clip CLIP models with Long-CLIP's stretched text positions, from weights or at random init.

Weights come as a file or a name (read by ``weights/files.py``: open_clip, OpenAI and safetensors
files, open_clip tags, ``hf-hub:ORG/REPO``, URLs) or as an already-read state dict (the towers of a
Lightning checkpoint). A state dict may hold 77 text positions (any CLIP) or already-stretched ones
(a mulclip-pl export); both load.
"""

from __future__ import annotations

import logging
from pathlib import Path

import open_clip
import torch
from torch import nn

from mulclip_pl.errors import PretrainedWeightsError
from mulclip_pl.model.long_text import (
    KEEP_POSITIONS, PositionScheme, adapt_position_layout, extend_text_context, stretched_length,
)
from mulclip_pl.tokenizer import LONG_CONTEXT
from mulclip_pl.weights.files import read_state_dict

CONFIG_DIR = Path(__file__).parent / "configs"
open_clip.add_model_config(CONFIG_DIR)  # registers mulclip-tiny / mulclip-test with open_clip


def build_clip(
    model_name: str,
    pretrained: str | None = None,
    context_length: int = LONG_CONTEXT,
    keep_positions: int = KEEP_POSITIONS,
    state: dict[str, torch.Tensor] | None = None,
    source: str | None = None,
    position_scheme: PositionScheme = "longclip",
    trust_pickle: bool = False,
    cache_dir: str | None = None,
    nonscalar_logit_scale: bool = False,
) -> nn.Module:
    """An open_clip ``CLIP`` with text positions stretched to ``context_length``.

    Weights come from ``pretrained`` (a file, or a name fetched into ``cache_dir``: see module
    doc), or from ``state`` (an already-read state dict, e.g. the towers of a Lightning checkpoint,
    named ``source`` in errors), which wins. ``trust_pickle`` lets ``pretrained`` be a file that
    needs full unpickling (see module doc).

    The model is created at CLIP's own context (77), weights are loaded, then positions are
    stretched, so that pretrained positions go through Long-CLIP's stretch and not open_clip's
    plain interpolation. Checkpoints that already hold ``context_length`` positions are loaded
    after the stretch, in either position layout (a Long-CLIP release with its two tables, a
    mulclip-pl checkpoint or export): ``position_scheme`` decides the layout of the model.

    ``nonscalar_logit_scale`` holds CLIP's temperature as a 1-element tensor (open_clip's own
    option), as the training module does: FSDP shards no 0-dim parameter. Weights of either shape load.
    """
    if model_name not in open_clip.list_models():
        raise ValueError(
            f"unknown model_name {model_name!r}; open_clip knows e.g. ViT-B-32, ViT-B-16, ViT-L-14, "
            f"ViT-B-16-quickgelu (OpenAI weights), mulclip-tiny, mulclip-test"
        )
    if state is None and pretrained:  # before building: a wrong name or file fails fast
        state, source = read_state_dict(pretrained, model_name, trust_pickle, cache_dir), pretrained
    clip = _create_unloaded(model_name, nonscalar_logit_scale)
    if not hasattr(clip, "positional_embedding"):
        raise ValueError(f"{model_name} has no CLIP-style text tower; mulclip-pl needs one")
    base_context = clip.positional_embedding.shape[0]
    factor = _stretch_factor(base_context, context_length, keep_positions)
    if state is not None and _positions(state) == base_context:
        load_state(clip, state, source, model_name)
        state = None
    if factor > 1:
        extend_text_context(clip, keep_positions, factor, position_scheme)
    if state is not None:
        state = dict(state)
        adapt_position_layout(state, clip)
        load_state(clip, state, source, model_name)
    return clip


def _create_unloaded(model_name: str, nonscalar_logit_scale: bool = False) -> nn.Module:
    """open_clip's model at random init, without its "initialized randomly" warning: wrong here,
    where weights are loaded right after (or random init was asked for). Other warnings pass."""
    root = logging.getLogger()  # open_clip logs through the root logger
    root.addFilter(_drop_random_init_warning)
    try:
        return open_clip.create_model(model_name, pretrained=None, nonscalar_logit_scale=nonscalar_logit_scale)
    finally:
        root.removeFilter(_drop_random_init_warning)


def _drop_random_init_warning(record: logging.LogRecord) -> bool:
    return "initialized randomly" not in record.getMessage()


def _stretch_factor(base: int, target: int, keep: int) -> int:
    if target == base:
        return 1
    factor, remainder = divmod(target - keep, base - keep)
    if remainder or factor < 1:
        raise ValueError(
            f"context_length={target} is not reachable by keeping {keep} of {base} positions and "
            f"stretching the rest by an integer factor (e.g. {stretched_length(base, keep)})"
        )
    return factor


def _positions(state: dict[str, torch.Tensor]) -> int | None:
    pos = state.get("positional_embedding")
    return None if pos is None else pos.shape[0]


def load_state(clip: nn.Module, state: dict[str, torch.Tensor], source: str, model_name: str) -> None:
    """Strict load with a message naming the file, the architecture and the failing keys."""
    model_state = clip.state_dict()
    missing = sorted(set(model_state) - set(state))
    unexpected = sorted(set(state) - set(model_state))
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(model_state[k].shape)}"
        for k in sorted(model_state.keys() & state.keys())  # sorted: the same examples every run
        if state[k].shape != model_state[k].shape and not (k == "logit_scale" and state[k].numel() == 1)
    ]
    if missing or unexpected or mismatched:
        raise PretrainedWeightsError(
            f"weights in {source} do not match architecture {model_name}: "
            f"{len(missing)} missing (e.g. {missing[:5]}), {len(unexpected)} unexpected (e.g. {unexpected[:5]}), "
            f"{len(mismatched)} shape mismatches (e.g. {mismatched[:5]}). Pass the --model.model_name "
            "the weights were trained as."
        )
    if "logit_scale" in state:
        state = {**state, "logit_scale": state["logit_scale"].reshape(model_state["logit_scale"].shape)}
    clip.load_state_dict(state, strict=True)
