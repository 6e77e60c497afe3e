"""Skipping NaN/inf losses together on every rank, and giving up after too many in a row.

A single bad batch (an overflow under fp16, a corrupt image that decoded to garbage) should cost
one step, not the run; a streak means the run itself diverged, and the error says what to try.
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

    def should_skip(self, loss: torch.Tensor, module: Any) -> bool:
        """True when any rank's loss is NaN/inf: every rank then skips the step together."""
        bad = (~torch.isfinite(loss.detach())).float()
        trainer = module._trainer
        if trainer is not None and trainer.world_size > 1:
            bad = trainer.strategy.reduce(bad, reduce_op="sum")
        if bad.item() == 0:
            self.streak = 0
            return False
        self.streak += 1
        module.log("train/nonfinite_skipped", 1.0, reduce_fx="sum", on_step=False, on_epoch=True)
        log.warning("non-finite loss at step %d: step skipped (%d in a row)", module.global_step, self.streak)
        if self.streak >= self.max_steps:
            raise NonFiniteLossError(
                f"{self.streak} consecutive non-finite losses (last at step {module.global_step}). "
                "Lower the learning rate, check the data for broken images, or resume from the last checkpoint."
            )
        return True
