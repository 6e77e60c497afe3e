"""Pieces of small Lightning fits: a data module over ready-made batches, a loss recorder that can crash a run."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback


class BatchList(L.LightningDataModule):
    """Trains on ``batches`` (dicts of tensors, already collated), in order, one per step."""

    def __init__(self, batches: list[dict]) -> None:
        super().__init__()
        self.batches = batches

    def train_dataloader(self):
        return torch.utils.data.DataLoader(self.batches, batch_size=None)


class Crash(RuntimeError):
    pass


class LossRecorder(Callback):
    """Records every step's loss and the sample keys it saw; can 'crash' the run at a given step."""

    def __init__(self, crash_at_step: int | None = None):
        self.losses, self.samples, self.crash_at_step = [], [], crash_at_step

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.global_step == self.crash_at_step:
            raise Crash  # before this step's checkpoint: the last one is from the step before
        self.losses.append(outputs["loss"].item())
        self.samples.append(batch["index"].tolist())


class WeightWatcher(Callback):
    """Per step: whether the weights moved (``changed``: a skipped step leaves them) and the loss
    (``losses``: None for a skipped step, which returns nothing)."""

    def __init__(self):
        self.changed, self.losses = [], []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.before = module.backbone.clip.visual.proj.detach().clone()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.changed.append(not torch.equal(self.before, module.backbone.clip.visual.proj))
        self.losses.append(outputs["loss"].item() if outputs else None)
