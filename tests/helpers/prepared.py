"""Editing prepared shards in place, as a differently built or damaged copy would look."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import datasets

from mulclip_pl.data.prepared.store import MANIFEST


def rewrite_shard(root: Path, k: int, table: datasets.Dataset) -> None:
    """Replace shard ``k`` of the prepared folder ``root`` with ``table`` and fix the manifest's file list."""
    manifest = json.loads((root / MANIFEST).read_text())
    shard = manifest["shards"][k]
    table.save_to_disk(str(root / "tmp"))
    shutil.rmtree(root / shard["path"])
    shutil.move(root / "tmp", root / shard["path"])
    shard["files"] = [{"name": p.name, "bytes": p.stat().st_size} for p in (root / shard["path"]).glob("*.arrow")]
    (root / MANIFEST).write_text(json.dumps(manifest))
