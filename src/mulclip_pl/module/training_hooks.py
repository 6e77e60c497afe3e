"""The MulCLIP LightningModule's hooks around its training step: the run's bookkeeping, not its forward.

Each epoch, bad input replaced and long captions cut are reported (``training/bad_inputs.py``); a step
skipped for a non-finite loss on several processes has its gradients dropped (``training/nonfinite.py``); each
checkpoint keeps every rank's random streams and a resume restores them (``training/random_state.py``),
and keys the optimizer state by parameter name, so that it resumes under another strategy; a resume
first checks that the checkpoint fits (``resume_check.py``), then hands the optimizer state to torch by
position, reading moments saved with 0-dim scalars too (``weights/one_element.py``); after each step
CLIP's temperature is clamped; the optimizer is AdamW over ``training/optim.py``'s groups, warm-up then
cosine decay.
"""

from __future__ import annotations

import logging
import math
from itertools import chain
from typing import Any

import torch
from lightning.pytorch.trainer.states import TrainerFn

from mulclip_pl.module.hparam_kinds import use_configured_rates
from mulclip_pl.module.resume_check import check_resumable, is_sharded, optimizer_groups
from mulclip_pl.training import random_state
from mulclip_pl.training.optim import adamw, param_groups, warmup_cosine
from mulclip_pl.training.optimizer_state import by_name, by_position, names_in_model, names_in_optimizer
from mulclip_pl.weights.one_element import one_element_optimizer_moments

log = logging.getLogger(__name__)


class TrainingHooks:
    """Mixin for ``MulCLIP``: its fit-time hooks other than ``training_step``. ``MulCLIP.__init__`` sets the
    state they keep (``_bad_inputs``, ``_nonfinite``, ``_truncated``, ``_schedule_length``)."""

    def on_train_start(self) -> None:
        self._bad_inputs.start(self.trainer)
        use_configured_rates(self)  # a resumed fit trains at this run's lr / head_lr / weight_decay (issue #50)
        self._nonfinite.start(self.trainer)

    def on_before_optimizer_step(self, optimizer) -> None:
        """With several processes a skipped step still runs backward: its gradients are dropped here."""
        self._nonfinite.drop_update(optimizer)

    def on_train_epoch_end(self) -> None:
        """Report bad input replaced (summed over ranks) and long captions truncated this epoch."""
        skipped = float(self._bad_inputs.end_epoch(self.trainer))  # already summed over ranks: "max" keeps it
        self.log("data/skipped_samples", skipped, sync_dist=True, reduce_fx="max")
        if self._truncated and self.hparams.long_weight > 0:  # a summaries-only run does not train on them
            log.warning("epoch %d: %d long captions were cut to %d tokens (data/truncated_captions; "
                        "data.overflow=error to refuse them)", self.current_epoch, self._truncated,
                        self.backbone.context_length)
        self._truncated = 0

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Every rank's random streams, and the optimizer state keyed by parameter name (as torch or
        Lightning's FSDP numbered it: ``training/optimizer_state.py``)."""
        checkpoint["rng_states"] = random_state.capture_ranks(self.trainer.world_size if self._trainer else 1)
        if self._trainer is not None and "optimizer_states" in checkpoint:
            in_model = names_in_model(self)
            checkpoint["optimizer_states"] = [
                by_name(state, list(chain(*names_in_optimizer(self, optimizer.param_groups))), in_model)
                for state, optimizer in zip(checkpoint["optimizer_states"], self.trainer.optimizers)]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A fit checks that the checkpoint fits (under FSDP the CLI did, before Lightning loaded it) and gets
        the optimizer state by position; each rank's global random streams continue (shuffling and
        per-sample choices are seeded by the data)."""
        one_element_optimizer_moments(checkpoint)
        trainer = self._trainer
        fitting = getattr(getattr(trainer, "state", None), "fn", None) == TrainerFn.FITTING
        if fitting and not is_sharded(trainer.strategy):
            named = check_resumable(self, checkpoint, str(trainer.ckpt_path), sharded=False)
            checkpoint["optimizer_states"] = [by_position(state, optimizer_groups(self)) for state in named]
        if "rng_states" in checkpoint:
            trainer = self._trainer
            random_state.restore_rank(checkpoint["rng_states"], trainer.global_rank if trainer else 0,
                                      trainer.world_size if trainer else 1)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        with torch.no_grad():  # CLIP clamps the learned temperature after each step
            self.backbone.logit_scale.clamp_(0, math.log(self.hparams.max_logit_scale))

    def configure_optimizers(self):
        hp = self.hparams
        optimizer = adamw(param_groups(self, hp.lr, hp.head_lr, hp.weight_decay))
        # The length is read lazily: asking for it here would build the train loader before a
        # resumed run restores the loader's position, and Lightning would not restore it after.
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(hp.warmup_steps, self._total_steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def _total_steps(self) -> int:
        if self._schedule_length is None:
            self._schedule_length = max(1, int(self.trainer.estimated_stepping_batches)) if self._trainer else 1
        return self._schedule_length
