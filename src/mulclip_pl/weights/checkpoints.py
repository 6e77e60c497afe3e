"""How ``mulclip-pl`` writes and reads Lightning checkpoints: whole or not at all, and without running code.

Writing: Lightning's default lets fsspec write a temp file in the *system* temp folder and move it
onto the checkpoint. Across file systems (local /tmp, checkpoints on a shared disk) that move is a
copy into ``last.ckpt`` itself, and a kill during it leaves a truncated file that ``--ckpt_path
last`` then picks up. Here the temp file sits next to its target, is fsynced, and ``os.replace``
puts it in place: readers see the old file or the new one. Its name, ``.last.ckpt.<random>.partial``,
never matches ``last*.ckpt``, so no resume can pick up a partial write.

Reading (``--ckpt_path``): ``weights_only=True``, so a checkpoint from elsewhere cannot run code;
one that needs full unpickling is refused unless ``--model.trust_pickle true`` (or Lightning's own
``--weights_only false``). ``read_lightning_checkpoint`` reads one outside a Trainer (``init_from``, exports,
``mulclip_pl.load``) the same way; ``map_checkpoint`` maps a whole one without reading its tensors (the
CLI's check that it can resume a fit).
"""

from __future__ import annotations

import glob
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Callable

import lightning as L
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.callbacks import Callback
import torch

from mulclip_pl.errors import PretrainedWeightsError
from mulclip_pl.weights.safe_pickle import read_error_gist, refusing_pickles


class SafeCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` with same-folder atomic writes and weights-only reads."""

    def __init__(self, trust_pickle: bool = False) -> None:
        self.trust_pickle = trust_pickle

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any = None) -> None:
        if storage_options is not None or not _is_local_file_protocol(path):
            return super().save_checkpoint(checkpoint, path, storage_options)  # remote stores: Lightning's way
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        for stale in target.parent.glob(f".{glob.escape(target.name)}.*.partial"):  # left by a killed writer
            stale.unlink(missing_ok=True)
        handle, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
        try:
            with os.fdopen(handle, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        _fsync_folder(target.parent)

    def load_checkpoint(self, path, map_location: Callable | None = lambda storage, loc: storage,
                        weights_only: bool | None = None) -> dict[str, Any]:
        trusted = self.trust_pickle or weights_only is False  # an explicit opt-in either way
        try:
            with refusing_pickles(path):
                return super().load_checkpoint(path, map_location=map_location, weights_only=not trusted)
        except PretrainedWeightsError:  # our refusal (UnsafePickleError) is already one line
            raise
        except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:  # corrupt or foreign: one line, not torch's
            raise PretrainedWeightsError(f"could not read checkpoint {path}: {read_error_gist(exc)}") from None


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (a power cut right after it keeps the new file)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:  # not possible on some systems (Windows): the rename is still atomic
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


class SafeCheckpoints(Callback):
    """Puts ``SafeCheckpointIO`` on the trainer before any checkpoint is read or written.

    ``setup`` runs before Lightning restores ``--ckpt_path``; ``trust_pickle`` is the module's
    hyper-parameter of that name (``--model.trust_pickle``). A checkpoint plugin of the user's own
    (async, cloud) is left in place.
    """

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trust = bool(getattr(pl_module.hparams, "trust_pickle", False))
            trainer.strategy.checkpoint_io = SafeCheckpointIO(trust_pickle=trust)


def read_lightning_checkpoint(path: str | Path, with_hparams: bool = False, trust_pickle: bool = False):
    """The ``state_dict`` of a Lightning checkpoint written by ``mulclip-pl fit`` (and its
    ``hyper_parameters`` with ``with_hparams``), read as ``load_checkpoint_dict`` reads it."""
    checkpoint = load_checkpoint_dict(path, trust_pickle=trust_pickle)
    if with_hparams:
        return checkpoint["state_dict"], dict(checkpoint.get("hyper_parameters", {}))
    return checkpoint["state_dict"]


def load_checkpoint_dict(path: str | Path, trust_pickle: bool = False) -> dict[str, Any]:
    """The whole Lightning checkpoint at ``path``, on the CPU.

    Read with ``weights_only=True``: a checkpoint from elsewhere cannot run code when opened. One
    that holds other pickled objects is refused unless ``trust_pickle``.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise PretrainedWeightsError(f"checkpoint not found: {file}")
    try:
        with refusing_pickles(file):
            checkpoint = torch.load(file, map_location="cpu", weights_only=not trust_pickle)
    except PretrainedWeightsError:
        raise
    except Exception as exc:
        raise PretrainedWeightsError(
            f"could not read {file} as a Lightning checkpoint ({type(exc).__name__}: {read_error_gist(exc)}). "
            "For plain CLIP weights files use --model.pretrained."
        ) from exc
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise PretrainedWeightsError(
            f"{file} is not a Lightning checkpoint (no 'state_dict'); "
            "for plain CLIP / Long-CLIP weights files use --model.pretrained"
        )
    return checkpoint


def map_checkpoint(path: str | Path) -> dict[str, Any] | None:
    """The whole checkpoint at ``path``, weights-only, its tensors mapped from the file rather than read
    (``mmap``: a look at names and shapes costs no memory); None if it cannot be read so (then Lightning's
    own reader says why, with ``SafeCheckpointIO``'s one line)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return None
    return checkpoint if isinstance(checkpoint, dict) else None
