"""Training pairs from rows of a Hugging Face ``datasets`` table (prepared shards or a user's own data).

Rows become the same items the file-based path uses (``Record``-like, the image as bytes), so
``PairDataset``'s transform seeding and bad-input policy apply unchanged; ``RowPairs.sample`` is
shared by the map-style dataset and the streaming one (``streaming.py``). Prepared rows carry their
token ids; a user's rows are tokenised by ``CaptionEncoder`` like loose files.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import datasets

from mulclip_pl.data.caption_tokens import CaptionFields, TokenisedCaption
from mulclip_pl.data.datasets import PairDataset, Skipped
from mulclip_pl.data.images import load_image
from mulclip_pl.data.records import Record
from mulclip_pl.errors import DataError

PREPARED_READ = ["id", "image", "caption_ids", "caption_tokens", "sentence_ids", "summary_ids"]


class NamedBytes(BytesIO):
    """Image bytes that name their row in error messages (``load_image`` prints what it opened)."""

    def __init__(self, data: bytes, name: str) -> None:
        super().__init__(data)
        self.label = name

    def __repr__(self) -> str:
        return self.label


@dataclass(frozen=True)
class PreparedRow:
    id: str
    image: NamedBytes
    tokens: TokenisedCaption


def image_of(value, where: str, base: Path | None = None):
    """A row's image cell -> something ``load_image`` opens: bytes (wrapped) or a file path."""
    if isinstance(value, dict):  # datasets.Image(decode=False): {"bytes": ..., "path": ...}
        value = value.get("bytes") or value.get("path")
    if isinstance(value, (bytes, bytearray)):
        return NamedBytes(bytes(value), where)
    if isinstance(value, str) and value:
        return (base / value) if base is not None and not Path(value).is_absolute() else Path(value)
    raise DataError(f"{where}: no image in the row (found {type(value).__name__}); expected bytes, an image or a path")


def prepared_item(row: dict, where: str) -> PreparedRow:
    tokens = TokenisedCaption(row["caption_ids"], row["caption_tokens"], row["sentence_ids"], row["summary_ids"])
    return PreparedRow(row["id"], image_of(row["image"], f"{where} ({row['id']})"), tokens)


@dataclass(frozen=True)
class ColumnItem:
    """A user's row -> ``Record``: ``columns`` maps image/caption/summary/id to column names
    (``json.caption`` reads a key of a dict column, as WebDataset ``.json`` files give)."""

    columns: dict[str, str]
    base: Path | None = None

    def __call__(self, row: dict, where: str) -> Record:
        record_id = str(self.cell(row, "id") or where)
        caption = self.cell(row, "caption")
        if not isinstance(caption, str) or not caption.strip():
            raise DataError(f"{where} ({record_id}): empty or missing caption in column {self.columns['caption']!r}")
        summary = self.cell(row, "summary")
        image = image_of(self.cell(row, "image"), f"{where} ({record_id})", self.base)
        return Record(record_id, image, caption.strip(), summary if isinstance(summary, str) else None)

    def cell(self, row: dict, role: str):
        if role not in self.columns:
            return None
        value = row
        for key in self.columns[role].split("."):
            value = value.get(key) if isinstance(value, dict) else None
        return value.decode() if isinstance(value, bytes) and role != "image" else value


@dataclass(frozen=True)
class PreparedText:
    """Training text fields straight from prepared ids (no spaCy, no BPE)."""

    fields: CaptionFields

    def __call__(self, row: PreparedRow, rng: random.Random | None = None) -> dict:
        return self.fields(row.tokens, rng, row.id)


class RowItems(Sequence):
    """Items read lazily from a ``datasets.Dataset`` (memory-mapped: rows are read when asked for)."""

    def __init__(self, table: datasets.Dataset, to_item: Callable[[dict, str], object], name: str) -> None:
        self.table, self.to_item, self.name = table, to_item, name

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index: int):
        return self.to_item(self.table[int(index)], f"{self.name} row {index}")


class RowPairs(PairDataset):
    """``PairDataset`` whose items come from table rows; a bad row (image or caption) follows the policy
    (and is replaced like a bad file, ``PairDataset.or_replacement``)."""

    def sample(self, epoch: int, index: int, fetch: Callable[[], object] | None = None):
        """Row ``index`` as tensors, or ``Skipped``; ``fetch`` reads the item (default: ``items[index]``)."""
        try:
            item = fetch() if fetch is not None else self.items[index]
            image = load_image(item.image, item.id, self.decode_min_side)
        except DataError as exc:
            if self.policy == "error":
                raise
            return Skipped(f"row {index}", str(exc))
        return {"index": index, "image": self.transform_image(image, epoch, index), **self.fields(item, epoch, index)}

    @property
    def records(self) -> list:
        return []  # rows carry bytes, not paths: the train/eval image-overlap report does not apply
