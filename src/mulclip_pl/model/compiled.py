"""``--model.compile``: torch.compile for the two towers, one residual block at a time, in place.

Why the blocks and not the towers whole (what PyTorch calls regional compilation, as torchtitan does):

- The blocks of a tower are one piece of code with one set of shapes, so one compiled graph serves
  all of them: compile time does not grow with depth (ViT-B/16's 12 image blocks share one graph).
- The blocks stay the modules they were. FSDP's auto-wrap and activation-checkpointing policies
  (``open_clip.transformer.ResidualAttentionBlock``) still find them and wrap *outside* the compiled
  code; open_clip's ``grad_checkpointing`` checkpoints a compiled block as it did an eager one; DDP's
  gradient hooks fire on the same parameters.
- ``nn.Module.compile`` compiles the block's call in place, where ``torch.compile(module)`` returns
  an ``OptimizedModule`` holding the block as ``_orig_mod``: state dicts, checkpoints and exports
  keep the eager names, so either kind of run resumes the other's checkpoint.

What stays eager: the patch and token embeddings, pooling and projections (one matmul each), the
calibration heads and the losses: about a tenth of a step (a profile of mulclip-tiny's full step puts
90% of it in the towers' matmuls and attention, benchmarks/README.md), so compiling them could win
little and would add graphs: the heads and WPR see the batch's word count, SAP its sentence count.
The heads are training-only and never exported, so nothing outside a fit would use them compiled.

Shapes: text batches are trimmed to their longest caption and hold the summaries plus the batch's
present sentences, so the text blocks see a new (texts, tokens) pair almost every step. ``dynamic``
is torch.compile's: ``True`` (the default, ``MulCLIP.compile_dynamic``) traces sizes as symbols from
the first call, one graph per tower and mode (training, no-grad, autocast); ``None`` compiles exact
sizes first and symbols from the first size that changes (one more graph per tower, nearer torch's
``recompile_limit`` of 8 graphs per code, which all blocks and modes share; past it they run eager);
``False`` recompiles for every new size until that limit. Buckets of lengths (each text batch padded
to a multiple of some tokens: exact, as the trim is) would bound the lengths but not the number of
texts, which follows the sentences present; symbolic sizes bound both with one graph
(tests/test_compile.py counts them over 20 steps of mixed lengths).
"""

from __future__ import annotations

from typing import Literal

from torch import nn

CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]


def tower_blocks(clip: nn.Module) -> list[nn.Module]:
    """The residual blocks of the image and the text tower of an open_clip CLIP, in order."""
    return [*clip.visual.transformer.resblocks, *clip.transformer.resblocks]


def compile_towers(clip: nn.Module, mode: CompileMode = "default", dynamic: bool | None = True) -> None:
    """Compile each residual block of ``clip``'s towers in place (``nn.Module.compile``); the modules,
    their names and parameters stay. Calling it twice compiles twice: the caller keeps track
    (``MulCLIP.configure_model``)."""
    for block in tower_blocks(clip):
        block.compile(mode=None if mode == "default" else mode, dynamic=dynamic)
