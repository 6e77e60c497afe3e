"""Test-only callbacks that CLI runs load by class path (``--trainer.callbacks``).

Kept apart from the test modules: importing one of those would import tests/conftest.py, which
sets torch's thread count, and a run given the callback would then compute with other threads
than the uninterrupted run it is compared with (float sums in another order).
"""

import os
import signal

from lightning.pytorch.callbacks import Callback


class KillGroup(Callback):
    """SIGKILL every process of the run (the whole process group, as when a node dies) when step ``at`` starts."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.at:
            os.killpg(os.getpgid(0), signal.SIGKILL)


class LastCkptEpochs(Callback):
    """Records, at the start of each epoch after the first and at the end of fit, which epoch
    last.ckpt holds (``seen``: class-level, read by the test in the same process)."""

    seen: list = []

    def _look(self, trainer) -> None:
        import torch

        callback = trainer.checkpoint_callback
        path = callback.last_model_path if callback is not None else ""
        if path:
            LastCkptEpochs.seen.append(torch.load(path, map_location="cpu", weights_only=True)["epoch"])

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch > 0:
            self._look(trainer)

    def on_train_end(self, trainer, pl_module):
        self._look(trainer)


class SeenIndices(Callback):
    """Records the data-set indices of every training batch (``batches``: class-level, read by the
    test in the same process)."""

    batches: list = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        SeenIndices.batches.append(batch["index"].tolist())
