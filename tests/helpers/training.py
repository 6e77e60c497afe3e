"""Pieces of small Lightning fits: a data module over ready-made batches, a loss recorder that can crash a run,
and the check that a run crashed mid-way and resumed from its last checkpoint equals one straight run."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from mulclip_pl.module import MulCLIP
from tests.conftest import TEST_MODEL


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


def fit_checkpointing_every_step(make_data: Callable[[], L.LightningDataModule], root: Path, recorder: LossRecorder,
                                 max_epochs: int, ckpt_path: str | None = None) -> MulCLIP:
    """A seeded fit of a small ``MulCLIP`` on ``make_data()`` (made after seeding) that writes ``root/last.ckpt``
    after every step, so that a crash anywhere can resume (``ckpt_path``)."""
    L.seed_everything(0, workers=True)
    torch.manual_seed(0)
    module = MulCLIP(model_name=TEST_MODEL, lr=1e-3, head_lr=1e-3, warmup_steps=2)
    data = make_data()
    checkpoint = ModelCheckpoint(dirpath=root, save_last=True, every_n_train_steps=1)
    trainer = L.Trainer(max_epochs=max_epochs, accelerator="cpu", logger=False, enable_progress_bar=False,
                        default_root_dir=root, callbacks=[recorder, checkpoint], enable_model_summary=False)
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    return module


def assert_resume_matches_straight_run(fit: Callable[..., MulCLIP], root: Path, crash_at_step: int,
                                       before_resume: Callable[[Path], None] | None = None) -> None:
    """``fit(folder, recorder, ckpt_path=None)`` once straight (``root/a``) and once crashed at ``crash_at_step``
    then resumed from its ``last.ckpt`` (``root/b``): the same samples in the same order, the same losses and
    the same final weights. ``before_resume(last.ckpt)`` may rewrite the checkpoint first (an older format)."""
    straight = LossRecorder()
    reference = fit(root / "a", straight)
    first, resumed = LossRecorder(crash_at_step=crash_at_step), LossRecorder()
    with pytest.raises(Crash):
        fit(root / "b", first)
    if before_resume is not None:
        before_resume(root / "b" / "last.ckpt")
    continued = fit(root / "b", resumed, ckpt_path=str(root / "b" / "last.ckpt"))
    assert first.samples + resumed.samples == straight.samples  # same data, same order, nothing repeated
    assert first.losses + resumed.losses == pytest.approx(straight.losses, rel=1e-5, abs=1e-6)
    for (name, a), b in zip(reference.state_dict().items(), continued.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
