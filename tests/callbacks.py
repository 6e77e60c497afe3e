"""Test-only callbacks that CLI runs load by class path (``--trainer.callbacks``).

Kept apart from the test modules: importing one of those would import tests/conftest.py, which
sets torch's thread count, and a run given the callback would then compute with other threads
than the uninterrupted run it is compared with (float sums in another order).
"""

import json
import os
import signal
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback
from torch._dynamo.utils import counters


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


class NaNLossAt(Callback):
    """Makes the training loss NaN on rank ``rank`` at step ``step`` (its backward then gives NaN gradients,
    as a batch that overflowed would), and writes what each rank's guard counted to
    ``default_root_dir/skipped_rank{R}.json`` at the end of fit."""

    def __init__(self, step: int, rank: int = 0) -> None:
        self.step, self.rank = step, rank

    def setup(self, trainer, pl_module, stage):
        compute = pl_module.compute_losses  # the bound method; the module's instance attribute shadows it

        def poisoned(batch):
            losses = compute(batch)
            if trainer.training and trainer.global_step == self.step and trainer.global_rank == self.rank:
                losses.total = losses.total * float("nan")
            return losses

        pl_module.compute_losses = poisoned

    def on_train_end(self, trainer, pl_module):
        counted = trainer.callback_metrics.get("train/nonfinite_skipped")
        path = Path(trainer.default_root_dir) / f"skipped_rank{trainer.global_rank}.json"
        path.write_text(json.dumps(None if counted is None else float(counted)))


class UndoStep(Callback):
    """Puts the weights and the optimizer's state back as they were before step ``step``: the run in which
    that step's update was not applied (the schedule still advances, as for a skipped step)."""

    def __init__(self, step: int) -> None:
        self.step, self.saved = step, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            optimizer = trainer.optimizers[0]
            self.saved = [(p, p.detach().clone(), {k: v.clone() if torch.is_tensor(v) else v
                                                   for k, v in optimizer.state[p].items()})
                          for group in optimizer.param_groups for p in group["params"]]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.saved is None:
            return
        optimizer = trainer.optimizers[0]
        with torch.no_grad():
            for param, value, state in self.saved:
                param.copy_(value)
                if state:
                    optimizer.state[param] = state
                else:
                    optimizer.state.pop(param, None)
        self.saved = None


class CompileCounts(Callback):
    """Writes dynamo's counters of this rank's fit (graphs compiled, graph breaks) to
    ``default_root_dir/compile_counts_rank{R}.json`` at the end of fit (``--model.compile`` runs)."""

    def on_train_end(self, trainer, pl_module):
        path = Path(trainer.default_root_dir) / f"compile_counts_rank{trainer.global_rank}.json"
        path.write_text(json.dumps({key: dict(value) for key, value in counters.items()}))
