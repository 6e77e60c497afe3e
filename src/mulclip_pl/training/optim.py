"""AdamW parameter groups and the warm-up + cosine learning-rate schedule used for fine-tuning.

CLIP's recipe: no weight decay on biases, norms, embeddings and the logit scale; the new
calibration heads get their own (larger) learning rate, since they start from scratch while the
towers start from pretrained weights.

Groups are decided by what a parameter *is* (its name and the type of the module holding it), never
by its shape: under FSDP (``use_orig_params=True``, Lightning's default) the optimizer is built after
wrapping and every parameter it sees is a 1-D shard, so a shape rule put every weight in the
no-decay group.
"""

from __future__ import annotations

import math
from typing import Callable, Iterator

import torch
from torch import nn

HEAD_PREFIXES = ("image_calibration", "text_calibration")
NORMS = (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nn.LocalResponseNorm, nn.modules.batchnorm._NormBase)
EMBEDDINGS = (nn.Embedding, nn.EmbeddingBag)
# CLIP / SigLIP temperature and bias, CoCa's class token, layer-scale gains (LayerScale, ConvNeXt blocks)
NO_DECAY_NAMES = ("logit_scale", "logit_bias", "cls_emb", "gamma")
WRAPPERS = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")  # FSDP, checkpointing, compile


def param_groups(module: nn.Module, lr: float, head_lr: float, weight_decay: float) -> list[dict]:
    """[decay, no-decay, heads (if any)] for AdamW; the heads keep weight decay at their own lr."""
    decay, no_decay, heads = [], [], []
    for name, owner, local, param in owned_parameters(module):
        if not param.requires_grad:
            continue
        if name.startswith(HEAD_PREFIXES):
            heads.append(param)
        elif decays(owner, local):
            decay.append(param)
        else:
            no_decay.append(param)
    groups = [{"params": decay, "lr": lr, "weight_decay": weight_decay},
              {"params": no_decay, "lr": lr, "weight_decay": 0.0}]
    if heads:
        groups.append({"params": heads, "lr": head_lr, "weight_decay": weight_decay})
    return groups


FUSED_DEVICES = ("cpu", "cuda")


def adamw(groups: list[dict]) -> torch.optim.AdamW:
    """CLIP's AdamW (betas 0.9 / 0.98, eps 1e-6), fused where torch has a fused kernel for every parameter.

    The fused kernel does one pass over all tensors: on this 2-core CPU an optimizer step of the 8 M-parameter
    demo model takes 16 ms instead of 63 ms (benchmarks/README.md), and on a GPU it is torch's fastest path.
    """
    params = [p for group in groups for p in group["params"]]
    fused = all(p.device.type in FUSED_DEVICES and p.is_floating_point() for p in params)
    return torch.optim.AdamW(groups, betas=(0.9, 0.98), eps=1e-6, fused=fused or None)


def decays(owner: nn.Module, local: str) -> bool:
    """Whether parameter ``owner.<local>`` gets weight decay: weights of linear and conv layers, projections."""
    if isinstance(owner, NORMS + EMBEDDINGS):
        return False
    return not (local == "bias" or local.endswith("_bias") or "embedding" in local or local in NO_DECAY_NAMES)


def owned_parameters(module: nn.Module) -> Iterator[tuple[str, nn.Module, str, nn.Parameter]]:
    """(name without wrapper prefixes, the module holding it, its name there, parameter), each once."""
    seen = set()
    for prefix, owner in module.named_modules():
        for local, param in owner.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            if type(param).__name__ == "FlatParameter":
                raise ValueError("param_groups: FSDP with use_orig_params=False hands the optimizer flat parameters "
                                 "that mix weights, biases and norms; keep Lightning's default use_orig_params=True")
            yield clean_name(f"{prefix}.{local}" if prefix else local), owner, local, param


def clean_name(name: str) -> str:
    """The parameter's name in the unwrapped model (FSDP, activation checkpointing and compile insert segments)."""
    for segment in WRAPPERS:
        name = name.replace(segment, "")
    return name


def warmup_cosine(warmup: int, total_steps: Callable[[], int]) -> Callable[[int], float]:
    """Linear warm-up then cosine decay to 0; ``total_steps`` is only called once past step 0."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if step == 0:
            return 1.0
        progress = (step - warmup) / max(1, total_steps() - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor
