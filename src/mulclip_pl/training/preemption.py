"""Pre-emption: on SIGTERM or SIGUSR1, a checkpoint at the current step, then exit saying how to resume.

Schedulers warn before they kill: Kubernetes, spot VMs and SLURM's time limit send SIGTERM, and
``sbatch --signal=USR1@90`` sends SIGUSR1. Without this, a run only has what ModelCheckpoint last
wrote (by default: the end of the previous epoch).

SIGTERM is noticed through Lightning's own handler (``trainer.received_sigterm``), which also
forwards it to DDP workers. SIGUSR1 gets a handler here only when nobody else has one: under SLURM
with auto-requeue, Lightning's handler saves an ``hpc_ckpt`` and requeues the job, and is left alone;
the SIGTERM that SLURM sends next then stops the run here.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException


class Preempted(SystemExit):
    """Raised once the pre-emption checkpoint is written; the exit status is 128 + the signal number."""


class Preemption(Callback):
    """At the end of the training step during which SIGTERM / SIGUSR1 arrived: write ``last.ckpt``
    (where ``--ckpt_path last`` finds it; atomically, see ``weights/checkpoints.py``) and raise ``Preempted``.

    The checkpoint is taken where ModelCheckpoint takes its step checkpoints, so resuming from it
    continues with the next batch exactly as an uninterrupted run would.
    """

    def __init__(self) -> None:
        self._signal: int | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._signal = None
        if not hasattr(signal, "SIGUSR1"):  # Windows
            return
        free = signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, None)
        if free and threading.current_thread() is threading.main_thread():  # Lightning restores it at teardown
            signal.signal(signal.SIGUSR1, self._remember)

    def _remember(self, signum: int, frame) -> None:
        self._signal = signum  # act at the end of the step, not inside it

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        signum = self._signal or (signal.SIGTERM if trainer.received_sigterm else None)
        if not trainer.strategy.reduce_boolean_decision(signum is not None, all=False):  # DDP: all ranks stop together
            return
        signum = signum or signal.SIGTERM
        path = last_checkpoint_path(trainer)
        if trainer.checkpoint_callback is not None:  # saved in its state: the resumed run overwrites this file
            trainer.checkpoint_callback.last_model_path = path  # (not a new last-v1.ckpt)
        trainer.save_checkpoint(path)
        if trainer.is_global_zero:
            resume = "--ckpt_path last" if trainer.checkpoint_callback else f"--ckpt_path {path}"
            print(f"mulclip-pl: stopped by {signal.Signals(signum).name} at step {trainer.global_step} (epoch "
                  f"{trainer.current_epoch}); checkpoint written to {path}. To resume, run the same command "
                  f"with {resume}", file=sys.stderr, flush=True)
        raise Preempted(128 + signum)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException) and trainer.is_global_zero:  # Lightning stopped outside a step
            print("mulclip-pl: stopped by SIGTERM outside a training step (no new checkpoint). To resume from the "
                  "newest one, run the same command with --ckpt_path last", file=sys.stderr, flush=True)


def last_checkpoint_path(trainer: L.Trainer) -> str:
    """``last.ckpt`` of the run's ModelCheckpoint (what ``--ckpt_path last`` resolves to)."""
    callback = trainer.checkpoint_callback
    if callback is not None and callback.dirpath:
        return callback.last_model_path or os.path.join(
            callback.dirpath, callback.CHECKPOINT_NAME_LAST + callback.FILE_EXTENSION)
    return os.path.join(trainer.default_root_dir, "checkpoints", "last.ckpt")
