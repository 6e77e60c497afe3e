"""Datamodules over Hugging Face ``datasets`` data: ``Prepared`` (``mulclip-pl prepare`` output) and
``HFCaptions`` (a user's own saved dataset, parquet files or WebDataset tar shards).

Both serve training batches identical in form to the file-based corpora (same transforms, sample
seeding, bad-input policy, resumable loader), map-style for data on local disk or ``streaming``
(contiguous reads split by rank and worker, ``streaming.py``) for data on slow or remote storage.
Evaluation is delegated to ``eval_data``, any corpus datamodule (e.g. DOCCI's held-out val and test).
"""

from __future__ import annotations

import logging
from pathlib import Path

import datasets
import torch

from mulclip_pl.data.base import _EVAL_SPLITS_FOR_STAGE, BaseDataModule, EvalSet, Stage
from mulclip_pl.data.caption_tokens import CaptionFields
from mulclip_pl.data.datasets import CaptionEncoder, collate
from mulclip_pl.data.prepared.hf_rows import PREPARED_READ, ColumnItem, PreparedText, RowItems, RowPairs, prepared_item
from mulclip_pl.data.prepared.hf_sources import Format, TableSource, open_user_rows
from mulclip_pl.data.prepared.store import check_tokens, open_shard, read_manifest
from mulclip_pl.data.prepared.streaming import ItemRuns, StreamingLoader, StreamingPairs
from mulclip_pl.data.text import SentenceSplitter
from mulclip_pl.errors import DataError

log = logging.getLogger(__name__)


class _RowsDataModule(BaseDataModule):
    """Training rows from a table; evaluation from ``eval_data``."""

    def __init__(self, streaming: bool = False, shuffle_buffer: int = 2048, eval_data: BaseDataModule | None = None,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.streaming, self.shuffle_buffer, self.eval_data = streaming, shuffle_buffer, eval_data

    def available_splits(self) -> tuple[Stage, ...]:
        held_out = self.eval_data.available_splits() if self.eval_data is not None else ()
        return ("train", *(s for s in held_out if s != "train"))

    def train_rows(self) -> tuple[object, RowPairs]:
        """(rows to stream, or a map-style ``RowPairs``) for this data; subclasses read their source."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", None):
            self.train_set = self.train_rows()
            log.info("%s: %d training rows (%s)", self.name, len(self.train_set.items),
                     "streaming" if self.streaming else "map-style")
        for split in _EVAL_SPLITS_FOR_STAGE.get(stage, ()):
            self._eval_sets[split] = self.build_eval_sets(split)

    def build_eval_sets(self, split: Stage) -> list[EvalSet]:
        if self.eval_data is None or split not in self.eval_data.available_splits():
            return []
        self.eval_data.trainer = self.trainer
        return self.eval_data.build_eval_sets(split)

    def _pairs(self, items, text) -> RowPairs:
        return RowPairs(items, self.transform(train=True), text, self._policy("train"), self.seed)

    def train_dataloader(self):
        if self.train_set is None:
            raise DataError(f"{self.name}: call setup('fit') before asking for the training loader")
        if not self.streaming:
            return super().train_dataloader()
        trainer = self.trainer
        rows = self._stream_rows()
        dataset = StreamingPairs(rows, self.train_set, self.batch_size, self.seed,
                                 rank=trainer.global_rank if trainer else 0, world_size=trainer.world_size if trainer else 1,
                                 workers=self.num_workers, shuffle_buffer=self.shuffle_buffer)
        return StreamingLoader(dataset, self._train_progress, num_workers=self.num_workers, collate_fn=collate,
                               pin_memory=torch.cuda.is_available())

    def _stream_rows(self) -> ItemRuns:
        return self.train_set.items


class Prepared(_RowsDataModule):
    """Training from ``mulclip-pl prepare`` shards: text already split and tokenised, images as bytes.

    Refused with an error naming expected and found values: a shard that is missing, truncated or
    unreadable, a missing column, token ids made for another tokenizer or context length than the
    model's. Images that do not decode follow ``bad_input`` and are counted like loose files.

    Args:
        path: the ``--out`` folder of ``mulclip-pl prepare``.
        streaming: read rows in contiguous runs split by rank and worker (data on slow or remote
            storage); False: random access (local disk).
        shuffle_buffer: rows a streaming worker holds and shuffles (memory: rows x image bytes).
        eval_data: a corpus datamodule for validation and test (e.g. ``DOCCI``); None: no evaluation.
        **kwargs: ``BaseDataModule``'s (batch_size, num_workers, max_sentences, ...).
    """

    default_name = "prepared"

    def __init__(self, path: str, streaming: bool = False, shuffle_buffer: int = 2048,
                 eval_data: BaseDataModule | None = None, **kwargs) -> None:
        super().__init__(streaming, shuffle_buffer, eval_data, **kwargs)
        self.path = Path(path).expanduser()

    def train_rows(self) -> RowPairs:
        manifest = read_manifest(self.path)
        context_length = self._config()["context_length"]
        check_tokens(manifest, self.tokenizer(warn=False).identity(), f"prepared data {self.path}")
        shards = [open_shard(self.path, shard) for shard in manifest["shards"]]
        if not shards:
            raise DataError(f"prepared data {self.path} has no rows (its manifest lists no shards)")
        undecoded = [shard.cast_column("image", datasets.Image(decode=False)) for shard in shards]  # our decoder
        table = datasets.concatenate_datasets(undecoded).select_columns(PREPARED_READ)
        fields = CaptionFields(context_length, self.max_sentences, self.sentence_selection, self.summary_source,
                               self.overflow)
        rows = (ItemRuns if self.streaming else RowItems)(TableSource(table), prepared_item, str(self.path))
        return self._pairs(rows, PreparedText(fields))


class HFCaptions(_RowsDataModule):
    """A user's own image-caption data in a ``datasets`` format, tokenised while training.

    Args:
        path: a ``save_to_disk`` folder or ``.arrow`` file(s) (format 'arrow'), a ``.parquet`` file or
            folder of them ('parquet'), a ``.tar`` file or folder of WebDataset shards ('webdataset').
        format: 'arrow', 'parquet' or 'webdataset'.
        columns: role -> column name for ``image`` (bytes, a ``datasets.Image`` or a path relative to
            ``path``), ``caption``, optional ``summary`` and ``id``; WebDataset columns are the file
            extensions (``jpg``, ``txt``; ``json.caption`` reads a key of the ``.json`` file).
        streaming, shuffle_buffer, eval_data, **kwargs: as for ``Prepared``.
        cache_dir: where ``datasets`` converts map-style parquet to Arrow (None: its default cache).
    """

    default_name = "hf_captions"

    def __init__(self, path: str, format: Format = "arrow", columns: dict[str, str] | None = None,
                 streaming: bool = False, shuffle_buffer: int = 2048, eval_data: BaseDataModule | None = None,
                 cache_dir: str | None = None, **kwargs) -> None:
        super().__init__(streaming, shuffle_buffer, eval_data, **kwargs)
        self.path, self.format, self.cache_dir = Path(path).expanduser(), format, cache_dir
        defaults = {"image": "jpg", "caption": "txt", "id": "__key__"} if format == "webdataset" else {}
        self.columns = {"image": "image", "caption": "caption", **defaults, **(columns or {})}

    def train_rows(self) -> RowPairs:
        to_item = ColumnItem(self.columns, self.path if self.path.is_dir() else self.path.parent)
        rows = open_user_rows(self.path, self.format, self.columns, to_item, self.streaming, self.cache_dir)
        text = CaptionEncoder(self.tokenizer(warn=False), SentenceSplitter(self.spacy_model), self.max_sentences,
                              self.sentence_selection, self.summary_source)
        return self._pairs(rows, text)
