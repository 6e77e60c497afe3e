"""Value-value attention: patch tokens for the local terms and the maps (``--model.patch_tokens value_value``).

Why. CLIP's last vision block lets every patch attend by query-key similarity, which pools the whole
image's context into each patch token: text then matches the background best, and a sentence's map
misses its object (CLIP Surgery, Li et al. 2023; docs/EXPERIMENTS.md measures it on the demo: the
patches a sentence matches *least* are its object's). CLIP Surgery re-runs that block's attention with
the values as queries and keys, so that each patch attends to patches that look like it, and leaves out
the block's MLP. Trained through this path, SAP's maps land on the objects (docs/EXPERIMENTS.md,
session 15) while ``v_cls`` (retrieval, inference, exports) still comes from the ordinary last block.

This is a second, cheap branch beside the last block: the first blocks run once (``ClipBackbone``
takes the last block's input from the same pass), and the branch costs one value projection, one
attention and one output projection. It stays eager under ``--model.compile`` (one matmul each, as the
pooling and projections do) and is recomputed in backward under ``--model.grad_checkpointing``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


def check_value_value_block(block: nn.Module, model_name: str) -> None:
    """Refuse, in one line, a block whose attention this branch cannot re-run (not ``nn.MultiheadAttention``)."""
    attention = getattr(block, "attn", None)
    if not isinstance(attention, nn.MultiheadAttention) or attention.in_proj_weight is None:
        raise ValueError(f"model.patch_tokens=value_value: {model_name}'s last vision block has no packed "
                         f"nn.MultiheadAttention ({type(attention).__name__}); use patch_tokens=clip")


def value_value_tokens(block: nn.Module, x: torch.Tensor, checkpointed: bool = False) -> torch.Tensor:
    """(B, N, width) input of the last residual block -> its output with value-value attention and no MLP:
    ``x + ls_1(out_proj(softmax(v v^T / sqrt(head_dim)) v))``, v the block's own value projection of ln_1(x)."""
    if checkpointed and torch.is_grad_enabled():
        return checkpoint(_value_value, block, x, use_reentrant=False)
    return _value_value(block, x)


def _value_value(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    attention, width = block.attn, x.shape[-1]
    bias = attention.in_proj_bias[2 * width:] if attention.in_proj_bias is not None else None
    values = F.linear(block.ln_1(x), attention.in_proj_weight[2 * width:], bias)
    values = values.unflatten(-1, (attention.num_heads, -1)).transpose(1, 2)  # (B, heads, N, head_dim)
    mixed = F.scaled_dot_product_attention(values, values, values).transpose(1, 2).flatten(2)
    return x + block.ls_1(attention.out_proj(mixed))
