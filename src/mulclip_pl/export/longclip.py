"""``mulclip-pl export --format longclip``: a weights file that Long-CLIP's ``longclip.load`` reads.

Long-CLIP (beichenzbc/Long-CLIP, ``model/longclip.py`` and ``model/model_longclip.py``) builds its
model from the state dict alone and loads it strictly: OpenAI CLIP's key layout plus a second text
position table. Its text tower adds ``positional_embedding * mask1 + positional_embedding_res *
mask2``, where mask1 keeps positions 0..19 and mask2 the rest, over 248 positions: the layout the
``longclip`` position scheme trains (``model/long_text.py``). A ``single``-scheme table is written
as both tables (each mask then picks its rows from the same table).

Its builder also fixes what the file cannot say: QuickGELU in both towers, 64-wide attention heads
(heads = width // 64), 248 positions of which the first 20 are kept. A model that differs would
load without an error and embed differently, so it is refused here.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mulclip_pl.errors import ExportError
from mulclip_pl.model.long_text import RES_KEY

LONGCLIP_CONTEXT, LONGCLIP_KEEP, LONGCLIP_HEAD_WIDTH = 248, 20, 64
_BLOCK_KEYS = ("attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight", "attn.out_proj.bias",
               "ln_1.weight", "ln_1.bias", "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight",
               "mlp.c_proj.bias", "ln_2.weight", "ln_2.bias")


def write_longclip(clip: nn.Module, model_name: str, target: Path) -> Path:
    """``torch.save`` of ``longclip_state(clip)`` at ``target`` (a ``.pt`` file)."""
    state = longclip_state(clip, model_name)
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, target)
    return target


def longclip_state(clip: nn.Module, model_name: str) -> dict[str, torch.Tensor]:
    """The CLIP towers in Long-CLIP's layout, fp32 on the CPU; refused (``ExportError``) if Long-CLIP
    would build a different network from them."""
    problems = _differences(clip)
    if problems:
        raise ExportError(f"{model_name} cannot be exported for Long-CLIP, whose loader would build another "
                          f"network: {'; '.join(problems)}. Long-CLIP's models are OpenAI ViTs (e.g. train as "
                          "ViT-B-16-quickgelu); use --format open_clip or hf for this one")
    own = clip.state_dict()
    state = {k: v for k, v in own.items() if k in expected_keys(clip)}
    if RES_KEY not in own:  # one table: each of Long-CLIP's masks picks its rows from it
        state[RES_KEY] = own["positional_embedding"]
    state["logit_scale"] = state["logit_scale"].reshape(())  # Long-CLIP's (and OpenAI's) 0-dim scalar
    return {k: v.detach().float().contiguous().cpu() for k, v in state.items()}


def expected_keys(clip: nn.Module) -> set[str]:
    """The state-dict keys of Long-CLIP's ViT CLIP with ``clip``'s depths."""
    text = [f"transformer.resblocks.{i}.{k}" for i in range(len(clip.transformer.resblocks)) for k in _BLOCK_KEYS]
    vision = [f"visual.transformer.resblocks.{i}.{k}" for i in range(len(clip.visual.transformer.resblocks))
              for k in _BLOCK_KEYS]
    return {*text, *vision, "token_embedding.weight", "positional_embedding", RES_KEY, "ln_final.weight",
            "ln_final.bias", "text_projection", "logit_scale", "visual.class_embedding", "visual.positional_embedding",
            "visual.conv1.weight", "visual.ln_pre.weight", "visual.ln_pre.bias", "visual.ln_post.weight",
            "visual.ln_post.bias", "visual.proj"}


def _differences(clip: nn.Module) -> list[str]:
    """What Long-CLIP's builder would get wrong about ``clip`` (empty: nothing)."""
    problems = []
    if int(clip.context_length) != LONGCLIP_CONTEXT or getattr(clip, "keep_positions", None) != LONGCLIP_KEEP:
        problems.append(f"it has {clip.context_length} text positions keeping {getattr(clip, 'keep_positions', 'none')}"
                        f" (Long-CLIP: {LONGCLIP_CONTEXT}, keeping {LONGCLIP_KEEP})")
    for tower, blocks in (("text", clip.transformer.resblocks), ("vision", clip.visual.transformer.resblocks)):
        block = blocks[0]
        activation = type(getattr(block.mlp, "gelu", None)).__name__
        if activation != "QuickGELU":
            problems.append(f"its {tower} tower uses {activation} (Long-CLIP: QuickGELU)")
        width, heads = block.attn.embed_dim, block.attn.num_heads
        if heads * LONGCLIP_HEAD_WIDTH != width:
            problems.append(f"its {tower} tower has {heads} heads of width {width // heads} "
                            f"(Long-CLIP: {LONGCLIP_HEAD_WIDTH}-wide heads)")
    state = set(clip.state_dict()) | {RES_KEY}
    missing, extra = expected_keys(clip) - state, state - expected_keys(clip) - {"attn_mask"}
    if missing or extra:
        problems.append(f"its weights differ from OpenAI CLIP's layout (missing {sorted(missing)[:3]}, "
                        f"extra {sorted(extra)[:3]})")
    return problems
