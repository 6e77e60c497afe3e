"""A user's own data in ``datasets`` formats: a ``save_to_disk`` folder or Arrow files, parquet files,
WebDataset tar shards; opened map-style (random access) or as contiguous runs for streaming.

Map-style parquet is converted once to Arrow by ``datasets`` (in its cache: the data must fit local
disk); streaming reads parquet row groups directly. Tar shards are indexed (member offsets) once at
setup and read by offset in both modes.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Literal

import datasets
import pyarrow.parquet as pq

from mulclip_pl.data.prepared.hf_rows import RowItems
from mulclip_pl.data.prepared.streaming import ItemRuns
from mulclip_pl.errors import DataError

Format = Literal["arrow", "parquet", "webdataset"]
_SUFFIX = {"arrow": ".arrow", "parquet": ".parquet", "webdataset": ".tar"}
_TEXT_EXTENSIONS = {"txt", "text", "caption", "summary", "id"}


def data_files(path: Path, fmt: Format) -> list[Path]:
    files = sorted(path.rglob(f"*{_SUFFIX[fmt]}")) if path.is_dir() else [path]
    if not files or not all(f.is_file() for f in files):
        raise DataError(f"HFCaptions: no {_SUFFIX[fmt]} files at {path} (format={fmt!r}); check data.path and data.format")
    return files


def check_columns(found: list[str], columns: dict[str, str], where: str) -> None:
    missing = {role: name for role, name in columns.items() if name.split(".")[0] not in found}
    if missing:
        raise DataError(f"{where}: missing column(s) {missing} (role: column); found columns {sorted(found)}. "
                        "Map the roles with data.columns, e.g. {image: jpg, caption: txt}")


def open_user_rows(path: Path, fmt: Format, columns: dict[str, str], to_item, streaming: bool, cache_dir=None):
    """RowItems (map-style) or ItemRuns (streaming) over a user's data, columns checked."""
    where = f"HFCaptions {path}"
    if fmt == "webdataset":
        source = TarSource(data_files(path, fmt))
        check_columns(list(source[0]) if len(source) else [], columns, where)
    elif fmt == "parquet" and streaming:
        source = ParquetSource(data_files(path, fmt))
        check_columns(source.column_names, columns, where)
    else:
        source = _table(path, fmt, cache_dir)
        check_columns(source.column_names, columns, where)
        for name, feature in source.features.items():
            if isinstance(feature, datasets.Image):
                source = source.cast_column(name, datasets.Image(decode=False))  # our decoder, our error policy
        source = TableSource(source)
    return ItemRuns(source, to_item, where) if streaming else RowItems(source, to_item, where)


def _table(path: Path, fmt: Format, cache_dir) -> datasets.Dataset:
    try:
        if fmt == "parquet":
            return datasets.Dataset.from_parquet([str(f) for f in data_files(path, fmt)], cache_dir=cache_dir)
        if path.is_dir() and (path / "state.json").is_file():
            return datasets.load_from_disk(str(path))
        return datasets.concatenate_datasets([datasets.Dataset.from_file(str(f)) for f in data_files(path, fmt)])
    except DataError:
        raise
    except Exception as exc:  # pyarrow raises several types for damaged files
        raise DataError(f"HFCaptions {path}: cannot open as {fmt} ({type(exc).__name__}: {exc})") from exc


class TableSource:
    """A ``datasets.Dataset`` as rows: by index, or a contiguous run (one slice)."""

    def __init__(self, table: datasets.Dataset) -> None:
        self.table = table
        self.column_names = table.column_names

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index: int) -> dict:
        return self.table[index]

    def rows(self, start: int, stop: int) -> list[dict]:
        columns = self.table[start:stop]
        return [dict(zip(columns, values)) for values in zip(*columns.values())]


class ParquetSource:
    """Parquet files read by row groups (streaming: only the groups a run touches are read)."""

    def __init__(self, files: list[Path]) -> None:
        self.files = [str(f) for f in files]
        self.groups = []  # (file index, row group, first global row, rows)
        first = 0
        for k, f in enumerate(self.files):
            meta = pq.ParquetFile(f).metadata
            for g in range(meta.num_row_groups):
                self.groups.append((k, g, first, meta.row_group(g).num_rows))
                first += meta.row_group(g).num_rows
        self.length = first
        self.column_names = pq.ParquetFile(self.files[0]).schema_arrow.names

    def __len__(self) -> int:
        return self.length

    def rows(self, start: int, stop: int) -> list[dict]:
        out = []
        for k, g, first, count in self.groups:
            if first + count <= start or first >= stop:
                continue
            table = pq.ParquetFile(self.files[k]).read_row_group(g)
            out += table.slice(max(0, start - first), min(count, stop - first) - max(0, start - first)).to_pylist()
        return out


class TarSource:
    """WebDataset tar shards: samples are consecutive members sharing a key (``dir/key.ext``)."""

    def __init__(self, files: list[Path]) -> None:
        self.files, self.samples = [str(f) for f in files], []  # (file index, key, {ext: (offset, size)})
        for k, f in enumerate(self.files):
            size = Path(f).stat().st_size
            try:
                with tarfile.open(f) as tar:
                    for member in tar:
                        if member.offset_data + member.size > size:
                            raise tarfile.ReadError(f"{member.name} needs {member.size} bytes at offset "
                                                    f"{member.offset_data}")
                        if member.isfile():
                            self._add(k, member)
            except (tarfile.TarError, OSError) as exc:
                raise DataError(f"WebDataset shard {f}: truncated or damaged ({exc}), the file has {size} bytes; "
                                "copy it again or leave it out") from exc

    def _add(self, k: int, member: tarfile.TarInfo) -> None:
        folder, _, name = member.name.rpartition("/")
        stem, _, ext = name.partition(".")
        key = f"{folder}/{stem}" if folder else stem
        if not self.samples or self.samples[-1][:2] != (k, key):
            self.samples.append((k, key, {}))
        self.samples[-1][2][ext.lower()] = (member.offset_data, member.size)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        k, key, members = self.samples[index]
        row = {"__key__": key}
        with open(self.files[k], "rb") as handle:
            for ext, (offset, size) in members.items():
                handle.seek(offset)
                row[ext] = _decode(ext, handle.read(size))
        return row

    def rows(self, start: int, stop: int) -> list[dict]:
        return [self[i] for i in range(start, stop)]


def _decode(ext: str, data: bytes):
    if ext == "json":
        return json.loads(data)
    if ext in _TEXT_EXTENSIONS:
        return data.decode("utf-8")
    return data
