"""The on-disk layout of prepared data, and the checks that refuse a bad copy before training.

``mulclip-pl prepare --out DIR`` writes::

    DIR/manifest.json                      source, counts, skipped items, tokenizer, shards
    DIR/shards/shard-00000/                a ``datasets`` dataset (``save_to_disk``): one Arrow file
    DIR/shards/shard-00001/ ...            plus ``done.json``, written last (the shard is complete)

Each shard is an ordinary Hugging Face dataset (``datasets.load_from_disk`` opens it); together
they are one memory-mapped ``Dataset`` (``open_prepared``). Token ids are wrapped (start + ids +
end, cut to the context) int32 lists; ``caption_tokens`` is the untruncated length, so truncation
is still counted (or refused, ``overflow='error'``) when training.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import datasets
from datasets import Features, List, Value

from mulclip_pl.errors import DataError

MANIFEST = "manifest.json"
DONE = "done.json"
FORMAT = "mulclip-pl prepared v2"
# Why each earlier format is refused (the manifest's and every shard's done.json carry the format).
OUTDATED = {"mulclip-pl prepared v1": "its images shrunk with --min_side ignore EXIF orientation (phone photos "
                                      "lie on their side)"}
FEATURES = Features({
    "id": Value("string"),
    "image": datasets.Image(),
    "caption": Value("string"),
    "summary": Value("string"),
    "sentences": List(Value("string")),
    "caption_ids": List(Value("int32")),
    "caption_tokens": Value("int32"),
    "sentence_ids": List(List(Value("int32"))),
    "summary_ids": List(Value("int32")),
})
TEXT_COLUMNS = [name for name in FEATURES if name != "image"]


def shard_dir(out: Path, index: int) -> Path:
    return out / "shards" / f"shard-{index:05d}"


def write_json(path: Path, content: dict) -> None:
    """Write-then-rename: a reader sees the whole file or none."""
    temporary = path.with_name(path.name + ".partial")
    temporary.write_text(json.dumps(content, indent=1))
    os.replace(temporary, path)


def read_manifest(path: str | Path) -> dict:
    root = Path(path).expanduser()
    manifest = root / MANIFEST
    if not manifest.is_file():
        hint = ("prepare did not finish there: rerun the same `mulclip-pl prepare` command to complete it"
                if (root / "shards").is_dir() else "expected the --out folder of `mulclip-pl prepare`")
        raise DataError(f"prepared data: no {MANIFEST} in {root} ({hint})")
    content = json.loads(manifest.read_text())
    found = content.get("format")
    if found != FORMAT:
        why = OUTDATED.get(found, f"expected {FORMAT!r}")
        raise DataError(f"{manifest}: format {found!r}, made by an older `mulclip-pl prepare`: {why}. Rerun the same "
                        "`mulclip-pl prepare` command (it rewrites every shard of an older format)")
    return content


def check_tokens(manifest: dict, expected: dict, where: str) -> None:
    """Refuse token ids made for another tokenizer or context length than the model's."""
    found = manifest["tokenizer"]
    differing = sorted(key for key in expected if found.get(key) != expected[key])
    if differing:
        details = ", ".join(f"{key}: expected {expected[key]!r}, found {found.get(key)!r}" for key in differing)
        raise DataError(f"{where}: prepared token ids do not match the model ({details}). Rerun mulclip-pl prepare "
                        f"with --data.context_length {expected['context_length']} (the model's), or train a model "
                        f"with the prepared context length.")


def check_columns(dataset: datasets.Dataset, required: list[str], where: str) -> None:
    missing = [name for name in required if name not in dataset.column_names]
    if missing:
        raise DataError(f"{where}: missing column(s) {missing}; expected {required}, found {dataset.column_names}")


def shard_files(root: Path, shard: dict) -> list[Path]:
    return [root / shard["path"] / file["name"] for file in shard["files"]]


def open_shard(root: Path, shard: dict) -> datasets.Dataset:
    """One shard, checked against the manifest: present, complete, the expected rows and columns."""
    folder = root / shard["path"]
    where = f"prepared shard {folder}"
    for file, path in zip(shard["files"], shard_files(root, shard)):
        size = path.stat().st_size if path.is_file() else None
        if size != file["bytes"]:
            found = "no such file" if size is None else f"{size} bytes"
            raise DataError(f"{where}: {file['name']} should have {file['bytes']} bytes, found {found} (a truncated "
                            "or partial copy?). Copy it again, or delete the shard folder and rerun the same "
                            "`mulclip-pl prepare` command, which rewrites missing shards.")
    try:
        dataset = datasets.load_from_disk(str(folder))
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DataError(f"{where}: unreadable ({type(exc).__name__}: {exc}). Delete the shard folder and rerun "
                        "the same `mulclip-pl prepare` command to rewrite it.") from exc
    check_columns(dataset, list(FEATURES), where)
    if len(dataset) != shard["rows"]:
        raise DataError(f"{where}: {len(dataset)} rows, the manifest says {shard['rows']}; rerun prepare for it")
    return dataset


def open_prepared(path: str | Path) -> tuple[datasets.Dataset, dict]:
    """All shards as one memory-mapped dataset (rows in manifest order), and the manifest."""
    root = Path(path).expanduser()
    manifest = read_manifest(root)
    shards = [open_shard(root, shard) for shard in manifest["shards"]]
    if not shards:
        raise DataError(f"prepared data at {root} has no shards (the source had no usable records)")
    return datasets.concatenate_datasets(shards), manifest
