"""``mulclip-pl predict``: the embeddings of a data set, written as one table for the whole run.

``embeddings.parquet`` (next to the logs) holds one row per record, in the data set's order:
``dataset`` (its name), ``id`` (the record's id), ``image_embedding`` (d floats) and
``text_embeddings`` (one d-float list per caption, in the record's order; empty for
classification sets). Embeddings are normalised fp32, the ones retrieval scores. Read it with
``datasets.Dataset.from_parquet`` or ``pandas.read_parquet``.

Under DDP each rank embeds a share of the records; the shares are gathered on rank 0, repeated
records (a distributed sampler pads the last batch) are dropped, and rank 0 writes the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import BasePredictionWriter

from mulclip_pl.eval.retrieval import first_occurrence

FILE_NAME = "embeddings.parquet"


def output_dir(trainer: L.Trainer) -> Path:
    """Where a run's tables and embeddings go: next to its logs, else its root folder. Under DDP
    every rank must call it (``trainer.log_dir`` broadcasts rank 0's folder)."""
    return Path(trainer.log_dir or trainer.default_root_dir)


class EmbeddingWriter(BasePredictionWriter):
    """Collects each batch's embeddings on the CPU, then writes ``embeddings.parquet`` once (rank 0)."""

    def __init__(self) -> None:
        super().__init__(write_interval="batch")
        self._parts: dict[int, list[dict[str, torch.Tensor]]] = {}

    def on_predict_epoch_start(self, trainer, pl_module) -> None:
        self._parts = {}

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx,
                           dataloader_idx) -> None:
        self._parts.setdefault(dataloader_idx, []).append({k: v.detach().cpu() for k, v in prediction.items()})

    def on_predict_epoch_end(self, trainer, pl_module) -> None:
        path = output_dir(trainer) / FILE_NAME  # on every rank: ``trainer.log_dir`` is a collective call
        parts = _gather_on_rank_zero({i: _concat(p) for i, p in self._parts.items()})
        self._parts = {}
        if not trainer.is_global_zero:
            return
        rows = [row for index, (name, records) in enumerate(_sets(trainer)) if index in parts
                for row in table_rows(name, records, parts[index])]
        write_table(rows, path)
        print(f"embeddings of {len(rows)} records written to {path}")


def table_rows(name: str, records: list, out: dict[str, torch.Tensor]) -> list[dict[str, Any]]:
    """One row per record embedded, in data-set order; ``out`` may repeat records (DDP padding)."""
    keep = first_occurrence(out["index"])  # sorted by index: the data set's order
    captions: dict[int, list[list[float]]] = {}
    if "text_emb" in out:
        first = first_occurrence(out["caption_index"])  # captions in data-set order
        for owner, embedding in zip(out["caption_image"][first].tolist(), out["text_emb"][first].tolist()):
            captions.setdefault(owner, []).append(embedding)
    return [{"dataset": name, "id": str(records[i].id), "image_embedding": embedding,
             "text_embeddings": captions.get(i, [])}
            for i, embedding in zip(out["index"][keep].tolist(), out["image_emb"][keep].float().tolist())]


def write_table(rows: list[dict[str, Any]], path: Path) -> None:
    """Parquet through ``datasets``, with fp32 columns (lists of Python floats would become fp64)."""
    import datasets
    import pyarrow.parquet as pq

    features = datasets.Features({
        "dataset": datasets.Value("string"), "id": datasets.Value("string"),
        "image_embedding": datasets.Sequence(datasets.Value("float32")),
        "text_embeddings": datasets.Sequence(datasets.Sequence(datasets.Value("float32"))),
    })
    columns = {name: [row[name] for row in rows] for name in features}
    path.parent.mkdir(parents=True, exist_ok=True)
    table = datasets.Dataset.from_dict(columns, features=features).data.table  # keeps the features in its schema
    pq.write_table(table, str(path))


def _concat(parts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {key: torch.cat([part[key] for part in parts]) for key in parts[0]}


def _gather_on_rank_zero(mine: dict[int, dict[str, torch.Tensor]]) -> dict[int, dict[str, torch.Tensor]]:
    """Every rank's outputs, per data set, concatenated on rank 0 (other ranks get their own back)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return mine
    gathered = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(mine, gathered, dst=0)
    if gathered is None:
        return mine
    sets = sorted({index for outputs in gathered for index in outputs})
    return {index: _concat([outputs[index] for outputs in gathered if index in outputs]) for index in sets}


def _sets(trainer: L.Trainer) -> list[tuple[str, list]]:
    """(name, records) of each predict loader, in loader order."""
    loaders = trainer.predict_dataloaders
    loaders = loaders if isinstance(loaders, (list, tuple)) else [loaders]
    specs = trainer.datamodule.eval_sets("test") if hasattr(trainer.datamodule, "eval_sets") else []
    names = [spec.name for spec in specs] if len(specs) == len(loaders) else ["data"] * len(loaders)
    return [(name, loader.dataset.records) for name, loader in zip(names, loaders)]
