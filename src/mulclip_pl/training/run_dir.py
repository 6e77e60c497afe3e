"""The folder a run writes its own files to (results tables, the bad-input list, embeddings)."""

from __future__ import annotations

from pathlib import Path

import lightning as L


def output_dir(trainer: L.Trainer) -> Path:
    """Where a run's tables and embeddings go: next to its logs, else its root folder. Under DDP
    every rank must call it (``trainer.log_dir`` broadcasts rank 0's folder)."""
    return Path(trainer.log_dir or trainer.default_root_dir)
