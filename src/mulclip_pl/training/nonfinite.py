"""Skipping NaN/inf losses together on every rank, and giving up after too many in a row.

A single bad batch (an overflow under fp16, a corrupt image that decoded to garbage) should cost
one step, not the run; a streak means the run itself diverged, and the error says what to try.

How a step is skipped:
- one process: ``training_step`` returns None; Lightning runs no backward and AdamW moves nothing.
- several processes (DDP, FSDP): Lightning refuses a None there, and every rank must run the same
  collectives. The ranks agree (an all-reduce of "some loss is not finite"), each returns
  ``zero_loss``, a zero that reaches every parameter the step used (DDP's reducer and FSDP's
  reduce-scatter run as usual), and ``drop_update`` then sets every gradient to None before the
  optimizer steps: AdamW skips parameters without a gradient, so neither the weights nor the moments
  move (a zero gradient would still move them: weight decay, momentum). The gradients that the
  backward produced are NaN where the forward was (0 x NaN), and are thrown away unread.
Either way the step counts: ``global_step`` and the learning-rate schedule advance, as they do in one
process, so a run with a skipped step ends where the same run with that update left out ends.
With several processes and gradient accumulation, a skip drops the whole accumulated update (its NaN
gradients have joined it); one process drops only the skipped batch.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from mulclip_pl.errors import NonFiniteLossError

log = logging.getLogger(__name__)


class NonFiniteGuard:
    """Counts consecutive non-finite losses of a LightningModule's training steps."""

    def __init__(self, max_steps: int) -> None:
        self.max_steps, self.streak = max_steps, 0
        self.streak_start: int | None = None  # the step the current streak began at
        self.first_step, self.resumed_from = 0, None  # this fit's first step, and the checkpoint it resumed from
        self.pending_drop = False  # a skipped step's gradients are to be dropped before the optimizer steps

    def start(self, trainer: Any) -> None:
        """At the start of a fit: where it starts, and from which checkpoint (``--ckpt_path``) if it resumed."""
        self.first_step, self.resumed_from = trainer.global_step, trainer.ckpt_path
        self.streak, self.streak_start, self.pending_drop = 0, None, False

    def should_skip(self, loss: torch.Tensor, module: Any) -> bool:
        """True when any rank's loss is NaN/inf: every rank then skips the step together."""
        bad = (~torch.isfinite(loss.detach())).float()
        trainer = module._trainer
        if trainer is not None and trainer.world_size > 1:
            bad = trainer.strategy.reduce(bad, reduce_op="sum")
        if bad.item() == 0:
            self.streak, self.streak_start = 0, None
            return False
        self.streak += 1
        if self.streak == 1:
            self.streak_start = module.global_step
        module.log("train/nonfinite_skipped", 1.0, reduce_fx="sum", on_step=False, on_epoch=True)
        log.warning("non-finite loss at step %d: step skipped (%d in a row)", module.global_step, self.streak)
        if self.streak >= self.max_steps:
            raise NonFiniteLossError(
                f"{self.streak} consecutive non-finite losses (last at step {module.global_step}). "
                "Lower the learning rate, check the data for broken images, or resume from the last checkpoint."
                + self._resume_hint()
            )
        return True

    def _resume_hint(self) -> str:
        if self.resumed_from is None or self.streak_start != self.first_step:
            return ""
        return (f" The streak began at the first step after resuming from {self.resumed_from}: that checkpoint may "
                "hold non-finite weights or optimizer state; resume from an earlier one.")

    def skipped_step_output(self, loss: torch.Tensor, module: Any) -> torch.Tensor | None:
        """What ``training_step`` returns for a step ``should_skip`` skipped: None in one process, as
        always; with several, ``zero_loss(loss)``, and the update is dropped (``drop_update``)."""
        trainer = module._trainer
        if trainer is None or trainer.world_size == 1:
            return None
        self.pending_drop = True
        return zero_loss(loss)

    def drop_update(self, optimizer: torch.optim.Optimizer) -> None:
        """From ``on_before_optimizer_step``: after a skipped step, no parameter has a gradient, so the
        optimizer moves none of them (nor their moments)."""
        if self.pending_drop:
            optimizer.zero_grad(set_to_none=True)
            self.pending_drop = False


def zero_loss(loss: torch.Tensor) -> torch.Tensor:
    """0, with the graph of ``loss``: backward reaches every parameter that ``loss`` did."""
    return torch.where(torch.isfinite(loss), loss, torch.zeros_like(loss)) * 0.0
