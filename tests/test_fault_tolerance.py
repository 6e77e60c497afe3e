"""Killed or pre-empted `mulclip-pl fit` runs resume from their newest intact checkpoint, exactly.

The subprocess tests run the real CLI (`python -m mulclip_pl.cli fit`) on 6 tiny samples (3 steps
an epoch, 2 epochs) and hurt it with ``Fault``, a test-only callback passed on the command line.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from mulclip_pl.data import GenericCaptions
from mulclip_pl.data.synthlong.generator import generate
from mulclip_pl.module import MulCLIP
from mulclip_pl.training.preemption import Preempted, Preemption
from mulclip_pl.weights.checkpoints import SafeCheckpoints
from tests.conftest import TEST_MODEL

ROOT = Path(__file__).resolve().parents[1]
STEPS_PER_EPOCH, EPOCHS = 3, 2


class _KillWhenPickled:
    def __reduce__(self):
        os.kill(os.getpid(), signal.SIGKILL)  # torch.save is writing the checkpoint's temp file right now
        return (int, ())


class Fault(Callback):
    """Test-only: hurts the run it is passed to (``--trainer.callbacks``) at one point.

    ``sigkill_before_step``: SIGKILL when step ``at`` starts; ``sigkill_in_save``: SIGKILL while the
    checkpoint of step ``at`` is being written; ``sigkill_at_epoch``: SIGKILL when epoch ``at``
    starts; ``pace``: write the step number to ``marker`` and sleep 2 s after each step.
    """

    def __init__(self, action: str, at: int = 0, marker: str = "") -> None:
        self.action, self.at, self.marker = action, at, marker

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.action == "sigkill_before_step" and trainer.global_step == self.at:
            os.kill(os.getpid(), signal.SIGKILL)

    def on_train_epoch_start(self, trainer, pl_module):
        if self.action == "sigkill_at_epoch" and trainer.current_epoch == self.at:
            os.kill(os.getpid(), signal.SIGKILL)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        if self.action == "sigkill_in_save" and trainer.global_step == self.at:
            checkpoint["zz_kill"] = _KillWhenPickled()  # last key: pickled after everything else

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.action == "pace":
            Path(self.marker).write_text(str(trainer.global_step))
            time.sleep(2.0)


@pytest.fixture(scope="module")
def train_file(tmp_path_factory):
    data = generate(tmp_path_factory.mktemp("synth"), image_size=32, sizes={"train": 2 * STEPS_PER_EPOCH})
    return data / "train.jsonl"


def _start(root: Path, train_file: Path, *extra: str, fault: dict | None = None) -> subprocess.Popen:
    args = ["fit", "--model.model_name", TEST_MODEL, "--model.lr", "1e-3", "--model.head_lr", "1e-3",
            "--model.warmup_steps", "2", "--data", "GenericCaptions", "--data.train_file", str(train_file),
            "--data.batch_size", "2", "--data.num_workers", "0", "--data.max_sentences", "2",
            "--trainer.max_epochs", str(EPOCHS), "--trainer.accelerator", "cpu", "--trainer.logger", "false",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--trainer.default_root_dir", str(root), "--checkpoint.dirpath", str(root / "ckpt"), *extra]
    if fault:
        args += ["--trainer.callbacks", json.dumps([{"class_path": f"{__name__}.Fault", "init_args": fault}])]
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}", "OMP_NUM_THREADS": "2"}
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "output.log", "w") as log:  # a file, not a pipe: nothing blocks while runs overlap
        process = subprocess.Popen([sys.executable, "-m", "mulclip_pl.cli", *args], cwd=ROOT, env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
    process.log = root / "output.log"
    return process


def _finish(process: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    process.wait(timeout=timeout)
    return process.returncode, process.log.read_text()


def _last(root: Path) -> dict:
    return torch.load(root / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True)


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a["global_step"] == b["global_step"] == STEPS_PER_EPOCH * EPOCHS
    for name, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][name], value, msg=name)


class _Reference:
    """The uninterrupted run, started at once and awaited at first use (it overlaps the first test's runs)."""

    def __init__(self, root: Path, train_file: Path) -> None:
        self.root, self.process, self.checkpoint = root, _start(root, train_file), None

    def __call__(self) -> dict:
        if self.checkpoint is None:
            code, err = _finish(self.process)
            assert code == 0, err
            self.checkpoint = _last(self.root)
        return self.checkpoint


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, train_file):
    reference = _Reference(tmp_path_factory.mktemp("uninterrupted"), train_file)
    yield reference
    reference.process.kill()  # no-op once finished
    reference.process.wait()


def test_sigterm_mid_epoch_checkpoints_and_resumes_exactly(tmp_path, train_file, uninterrupted):
    marker = tmp_path / "step"
    run = _start(tmp_path, train_file, fault={"action": "pace", "marker": str(marker)})
    while not marker.exists() and run.poll() is None:
        time.sleep(0.05)
    run.send_signal(signal.SIGTERM)  # during step 1's pause or step 2: either way mid-epoch 0
    code, err = _finish(run)
    assert code == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM" in err and "--ckpt_path last" in err and "Traceback" not in err
    stopped = _last(tmp_path)
    assert 1 <= stopped["global_step"] < STEPS_PER_EPOCH and stopped["epoch"] == 0  # no step-checkpoints were asked for
    code, err = _finish(_start(tmp_path, train_file, "--ckpt_path", "last"))
    assert code == 0, err
    _assert_same_weights(uninterrupted(), _last(tmp_path))


def test_sigkill_at_three_points_resumes_from_newest_intact_checkpoint(tmp_path, train_file, uninterrupted):
    every_step = ["--checkpoint.every_n_train_steps", "1", "--checkpoint.save_top_k", "0"]
    resume = [*every_step, "--ckpt_path", "last"]
    ckpt = tmp_path / "ckpt"
    # 1. Between checkpoints, mid-epoch: the one of step 2 is the newest.
    code, _ = _finish(_start(tmp_path, train_file, *every_step, fault={"action": "sigkill_before_step", "at": 2}))
    assert code == -signal.SIGKILL and _last(tmp_path)["global_step"] == 2
    # 2. While step 3's checkpoint is being written: step 2's stays, the partial file is not a candidate.
    code, _ = _finish(_start(tmp_path, train_file, *resume, fault={"action": "sigkill_in_save", "at": 3}))
    assert code == -signal.SIGKILL and _last(tmp_path)["global_step"] == 2
    partial = [p.name for p in ckpt.iterdir() if p.name != "last.ckpt"]
    assert len(partial) == 1 and partial[0].startswith(".last.ckpt.") and partial[0].endswith(".partial")
    # 3. At the start of epoch 1, after epoch 0's last step (3) was saved.
    code, _ = _finish(_start(tmp_path, train_file, *resume, fault={"action": "sigkill_at_epoch", "at": 1}))
    assert code == -signal.SIGKILL and _last(tmp_path)["global_step"] == STEPS_PER_EPOCH
    assert sorted(p.name for p in ckpt.iterdir()) == ["last.ckpt"]  # the next write cleared the partial file
    code, err = _finish(_start(tmp_path, train_file, *resume))
    assert code == 0, err
    _assert_same_weights(uninterrupted(), _last(tmp_path))


# ---------------------------------------------------------------------------------- in-process, fast
class SendSignal(Callback):
    def __init__(self, signum, at_step, check=None):
        self.signum, self.at_step, self.check = signum, at_step, check

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.at_step:
            if self.check:
                self.check()
            os.kill(os.getpid(), self.signum)  # arrives during this step


def _fit_with(tmp_path, train_file, sender):
    torch.manual_seed(0)
    module = MulCLIP(model_name=TEST_MODEL, warmup_steps=1)
    data = GenericCaptions(train_file=str(train_file), batch_size=2, num_workers=0, max_sentences=2)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path,
                        callbacks=[sender, SafeCheckpoints(), Preemption(), ModelCheckpoint(tmp_path / "ckpt", save_last=True)])
    trainer.fit(module, datamodule=data)


def test_sigusr1_checkpoints_at_the_current_step(tmp_path, train_file, capsys):
    with pytest.raises(Preempted) as stop:
        _fit_with(tmp_path, train_file, SendSignal(signal.SIGUSR1, at_step=1))
    assert stop.value.code == 128 + signal.SIGUSR1
    assert _last(tmp_path)["global_step"] == 2  # step 2 (the one the signal arrived in) finished, then saved
    assert "stopped by SIGUSR1 at step 2" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL  # handler removed again


def test_under_slurm_lightning_keeps_its_requeue_handler(tmp_path, train_file, monkeypatch):
    for key, value in {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "train", "SLURM_JOB_ID": "7", "SLURM_PROCID": "0",
                       "SLURM_LOCALID": "0", "SLURM_NODEID": "0"}.items():
        monkeypatch.setenv(key, value)
    handlers = []
    sender = SendSignal(signal.SIGTERM, at_step=1, check=lambda: handlers.append(signal.getsignal(signal.SIGUSR1)))
    with pytest.raises(Preempted) as stop:
        _fit_with(tmp_path, train_file, sender)
    assert "_slurm_sigusr_handler_fn" in repr(handlers[0].signal_handlers)  # Lightning's auto-requeue, untouched
    assert stop.value.code == 128 + signal.SIGTERM and _last(tmp_path)["global_step"] == 2
