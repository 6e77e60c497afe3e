"""``mulclip-pl predict``: the embeddings of a data set, written as one table for the whole run.

``embeddings.parquet`` (next to the logs) holds one row per record, in the data set's order:
``dataset`` (its name), ``id`` (the record's id), ``image_embedding`` (d floats) and
``text_embeddings`` (one d-float list per caption, in the record's order; empty for
classification sets). Embeddings are normalised fp32, the ones retrieval scores. Read it with
``datasets.Dataset.from_parquet`` or ``pandas.read_parquet``.

Each rank appends every batch's rows to its own part file (Arrow IPC, in ``.embeddings-parts/``
next to the table) and holds none of them. After a barrier rank 0 merges the parts in data-set
order, reading them memory-mapped and writing ``MERGE_CHUNK`` rows at a time: no process ever holds
all the embeddings (10M captions x 768 fp32 are 30 GB). Records a distributed sampler repeats to
pad the last batch are kept once. On several nodes the run's folder must be shared, as for checkpoints.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import datasets
import lightning as L
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from mulclip_pl.metrics.retrieval import first_occurrence
from mulclip_pl.training.run_dir import output_dir

FILE_NAME = "embeddings.parquet"
PARTS_FOLDER = ".embeddings-parts"
MERGE_CHUNK = 4096  # rows the merge reads and writes at a time (one parquet row group each)
FEATURES = datasets.Features({
    "dataset": datasets.Value("string"), "id": datasets.Value("string"),
    "image_embedding": datasets.Sequence(datasets.Value("float32")),
    "text_embeddings": datasets.Sequence(datasets.Sequence(datasets.Value("float32"))),
})
# The table's schema (its metadata lets ``datasets`` read the features back) and a part's: which loader, which record.
SCHEMA = FEATURES.arrow_schema
PART_SCHEMA = pa.schema([pa.field("loader", pa.int32()), pa.field("index", pa.int64()), *SCHEMA])


class EmbeddingWriter(BasePredictionWriter):
    """Appends each batch's rows to this rank's part file; rank 0 merges the parts into ``embeddings.parquet``."""

    def __init__(self) -> None:
        super().__init__(write_interval="batch")
        self._writer: pa.ipc.RecordBatchFileWriter | None = None

    def on_predict_epoch_start(self, trainer, pl_module) -> None:
        self._path = output_dir(trainer) / FILE_NAME  # on every rank: ``trainer.log_dir`` is a collective call
        self._sets = _sets(trainer)
        parts = self._path.parent / PARTS_FOLDER
        parts.mkdir(parents=True, exist_ok=True)
        self._writer = pa.ipc.new_file(str(part_path(parts, trainer.global_rank)), PART_SCHEMA)

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx,
                           dataloader_idx) -> None:
        name, records = self._sets[dataloader_idx]
        rows = table_rows(name, records, {k: v.detach().cpu() for k, v in prediction.items()})
        self._writer.write_table(pa.Table.from_pylist([{"loader": dataloader_idx, **row} for row in rows],
                                                      schema=PART_SCHEMA))

    def on_predict_epoch_end(self, trainer, pl_module) -> None:
        self._writer.close()
        self._writer = None
        trainer.strategy.barrier("embedding parts written")
        if not trainer.is_global_zero:
            return
        parts = self._path.parent / PARTS_FOLDER
        count = merge_parts([part_path(parts, rank) for rank in range(trainer.world_size)], self._path)
        shutil.rmtree(parts)
        print(f"embeddings of {count} records written to {self._path}")


def part_path(folder: Path, rank: int) -> Path:
    return folder / f"rank{rank:05d}.arrow"


def table_rows(name: str, records: list, out: dict[str, torch.Tensor]) -> list[dict[str, Any]]:
    """One row per record of one batch, by index; ``out`` may repeat records (DDP padding)."""
    keep = first_occurrence(out["index"])  # sorted by index: the data set's order
    captions: dict[int, list[list[float]]] = {}
    if "text_emb" in out:
        first = first_occurrence(out["caption_index"])  # captions in data-set order
        for owner, embedding in zip(out["caption_image"][first].tolist(), out["text_emb"][first].tolist()):
            captions.setdefault(owner, []).append(embedding)
    return [{"index": i, "dataset": name, "id": str(records[i].id), "image_embedding": embedding,
             "text_embeddings": captions.get(i, [])}
            for i, embedding in zip(out["index"][keep].tolist(), out["image_emb"][keep].float().tolist())]


def merge_parts(parts: list[Path], path: Path) -> int:
    """The rows of every part file, in data-set order (loader, then index) and each record once,
    written to the parquet table ``path`` ``MERGE_CHUNK`` rows at a time; returns the row count."""
    tables = [_read_part(part) for part in parts]
    loader = np.concatenate([table["loader"].to_numpy() for table in tables] or [np.zeros(0, np.int32)])
    index = np.concatenate([table["index"].to_numpy() for table in tables] or [np.zeros(0, np.int64)])
    source = np.repeat(np.arange(len(tables)), [table.num_rows for table in tables])
    row = np.concatenate([np.arange(table.num_rows) for table in tables] or [np.zeros(0, np.int64)])
    order = np.lexsort((index, loader))  # stable: of a repeated record, the lowest rank's copy comes first
    repeated = np.zeros(len(order), dtype=bool)
    repeated[1:] = (loader[order][1:] == loader[order][:-1]) & (index[order][1:] == index[order][:-1])
    order = order[~repeated]
    path.parent.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(str(path), SCHEMA) as writer:
        for start in range(0, len(order), MERGE_CHUNK):
            chunk = order[start:start + MERGE_CHUNK]
            sources = np.unique(source[chunk])
            pieces = [tables[s].take(row[chunk][source[chunk] == s]) for s in sources]
            placed = np.concatenate([np.flatnonzero(source[chunk] == s) for s in sources])
            rows = pa.concat_tables(pieces).take(np.argsort(placed))  # back in chunk order
            writer.write_table(rows.select(SCHEMA.names).cast(SCHEMA))
    return len(order)


def _read_part(part: Path) -> pa.Table:
    """A part file, memory-mapped: its pages are read when a chunk takes rows from them."""
    if not part.is_file():
        raise FileNotFoundError(f"predict: {part} not found; rank 0 merges every rank's part from the run folder, so "
                                "on several nodes put it on shared storage (--trainer.default_root_dir)")
    return pa.ipc.open_file(pa.memory_map(str(part))).read_all()


def _sets(trainer: L.Trainer) -> list[tuple[str, list]]:
    """(name, records) of each predict loader, in loader order."""
    loaders = trainer.predict_dataloaders
    loaders = loaders if isinstance(loaders, (list, tuple)) else [loaders]
    specs = trainer.datamodule.eval_sets("test") if hasattr(trainer.datamodule, "eval_sets") else []
    names = [spec.name for spec in specs] if len(specs) == len(loaders) else ["data"] * len(loaders)
    return [(name, loader.dataset.records) for name, loader in zip(names, loaders)]
