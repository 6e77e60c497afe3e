"""``mulclip-pl predict``: embeddings of a data set written to disk, rank by rank."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter


def output_dir(trainer: L.Trainer) -> Path:
    """Where a run's tables and embeddings go: next to its logs, else its root folder."""
    return Path(trainer.log_dir or trainer.default_root_dir)


class EmbeddingWriter(BasePredictionWriter):
    """Writes ``predict`` outputs as ``embeddings_rank{r}.pt`` (one dict of concatenated tensors per data set)."""

    def __init__(self) -> None:
        super().__init__(write_interval="epoch")

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        per_set = predictions if predictions and isinstance(predictions[0], list) else [predictions]
        merged = [{k: torch.cat([p[k] for p in outputs]) for k in outputs[0]} for outputs in per_set if outputs]
        path = output_dir(trainer) / f"embeddings_rank{trainer.global_rank}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(merged, path)
        print(f"embeddings written to {path}")
