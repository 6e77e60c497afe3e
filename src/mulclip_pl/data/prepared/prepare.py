"""``mulclip-pl prepare``: a corpus's records as sharded ``datasets`` Arrow with the text work done.

Training from loose files splits every caption with spaCy and BPE-encodes it at every epoch, and
decodes full-size photos. ``prepare`` does that once: image bytes (optionally shrunk to a shorter
side of ``min_side``), the long caption, summary and sentences, and their token ids for the
tokenizer and context length the model will use. ``--data Prepared --data.path OUT`` trains from it.

Shards are written in parallel (``num_proc``), each to a temporary folder renamed when complete, with
a ``done.json`` marker; a rerun skips finished shards, so an interrupted run resumes. The manifest
lists the source, the counts, every skipped item with its reason, the tokenizer and context length.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from io import BytesIO
from pathlib import Path

import datasets
import lightning as L
from PIL import Image
from tqdm import tqdm

from mulclip_pl.data.base import BaseDataModule
from mulclip_pl.data.caption_tokens import tokenise_caption
from mulclip_pl.data.images import decoding_cause, is_decoding_error
from mulclip_pl.data.prepared.store import DONE, FEATURES, FORMAT, MANIFEST, shard_dir, write_json
from mulclip_pl.data.records import BadInputPolicy, ProblemLog, Record
from mulclip_pl.data.shrink import JPEG_QUALITY, _decode_smaller
from mulclip_pl.data.text import SentenceSplitter
from mulclip_pl.errors import DataError
from mulclip_pl.tokenizer import LongTextTokenizer


@dataclass(frozen=True)
class Settings:
    """Everything a shard's content depends on besides its records (part of its fingerprint)."""

    tokenizer: dict  # LongTextTokenizer.identity(), context length included
    spacy_model: str | None
    min_side: int | None
    policy: BadInputPolicy


@dataclass(frozen=True)
class ShardJob:
    index: int
    records: list[Record]
    folder: Path
    settings: Settings

    def fingerprint(self) -> str:
        digest = hashlib.sha1(json.dumps(self.settings.__dict__, sort_keys=True).encode())
        for r in self.records:
            digest.update(f"{r.id}\t{r.image}\t{r.caption}\t{r.summary}\n".encode())
        return digest.hexdigest()


def prepare(*, data: BaseDataModule, out: str, split: str = "train", min_side: int | None = None, num_proc: int = 1,
            shard_size: int = 1000) -> dict:
    """Write ``data``'s ``split`` as prepared shards in ``out`` (see ``--data Prepared``).

    Args:
        data: the corpus datamodule and its arguments, as for ``fit`` (``--data DOCCI --data.root ...``);
            its ``context_length`` (default 248), ``spacy_model`` and ``bad_input`` apply.
        out: output folder; rerunning the same command there resumes (finished shards are kept).
        split: which split's records to write (``train``; ``val``/``test`` where the corpus has them).
        min_side: store images with their shorter side scaled down to this (256 for 224 px
            training); None keeps the original bytes.
        num_proc: processes writing shards in parallel.
        shard_size: records per shard (one Arrow file each; streaming splits data by shard rows).
    """
    if shard_size < 1 or num_proc < 1:
        raise ValueError(f"prepare: shard_size and num_proc must be >= 1 (got {shard_size}, {num_proc})")
    root = Path(out).expanduser()
    data.prepare_data()  # SynthLong generates itself here
    stage = "train" if split == "train" else split  # held-out splits default to bad_input='error'
    records = data.load(split, stage)
    load_problems = data.problems[-1].problems
    settings = Settings(data.tokenizer().identity(), data.spacy_model, min_side, data._policy(stage))
    jobs = [ShardJob(k, records[start:start + shard_size], shard_dir(root, k), settings)
            for k, start in enumerate(range(0, len(records), shard_size))]
    todo = [job for job in jobs if not _finished(job)]
    _check_no_stray_shards(root, len(jobs))
    root.joinpath("shards").mkdir(parents=True, exist_ok=True)
    if num_proc == 1 or len(todo) <= 1:
        for job in tqdm(todo, desc="prepare"):
            write_shard(job)
    else:
        with ProcessPoolExecutor(max_workers=num_proc) as pool:
            list(tqdm(pool.map(write_shard, todo), total=len(todo), desc="prepare"))
    manifest = _manifest(data, split, settings, jobs, load_problems, root)
    write_json(root / MANIFEST, manifest)
    counts = manifest["counts"]
    print(f"{root}: {counts['rows']} rows in {len(jobs)} shards ({len(jobs) - len(todo)} already there), "
          f"{counts['skipped']} skipped (listed in {MANIFEST}), {counts['truncated_captions']} captions over "
          f"{settings.tokenizer['context_length']} tokens")
    return manifest


def _finished(job: ShardJob) -> bool:
    """A complete shard of this job; one of an older format is rewritten, one written from other
    records or settings is refused."""
    marker = job.folder / DONE
    if not marker.is_file():
        return False
    content = json.loads(marker.read_text())
    if content.get("format") != FORMAT:
        return False
    found = content["fingerprint"]
    if found != job.fingerprint():
        raise DataError(f"{job.folder} was written from other records or settings (fingerprint {found}, this run "
                        f"{job.fingerprint()}); use a new --out folder, or delete {job.folder.parent} to start over")
    return True


def _check_no_stray_shards(root: Path, count: int) -> None:
    folder = root / "shards"
    stray = sorted(p.name for p in folder.glob("shard-*") if not p.name.endswith(".partial")
                   and int(p.name.split("-")[1]) >= count) if folder.is_dir() else []
    if stray:
        raise DataError(f"{folder} holds shards this source does not have ({stray[:3]}...): it was prepared from "
                        "other records; use a new --out folder")


_TEXT_TOOLS: dict = {}  # per process: the spaCy pipeline and BPE tables are loaded once


def _text_tools(settings: Settings) -> tuple[LongTextTokenizer, SentenceSplitter]:
    key = (settings.tokenizer["context_length"], settings.spacy_model)
    if key not in _TEXT_TOOLS:
        _TEXT_TOOLS[key] = (LongTextTokenizer(settings.tokenizer["context_length"], "truncate", warn=False),
                            SentenceSplitter(settings.spacy_model))
    return _TEXT_TOOLS[key]


def write_shard(job: ShardJob) -> None:
    """Rows of one shard -> ``save_to_disk`` in a temporary folder, marker last, then rename."""
    datasets.disable_progress_bars()  # one bar for the whole run, not one per shard
    tokenizer, splitter = _text_tools(job.settings)
    problems = ProblemLog(job.settings.policy, where=f"prepare shard {job.index}")
    rows, truncated = [], 0
    for record in job.records:
        image = image_bytes(Path(record.image), job.settings.min_side, record.id, problems)
        if image is None:
            continue
        sentences = splitter(record.caption) or [record.caption]
        tokens = tokenise_caption(tokenizer, record.caption, sentences, record.summary)
        truncated += tokens.caption_tokens > tokenizer.context_length
        rows.append({"id": record.id, "image": {"bytes": image, "path": Path(record.image).name},
                     "caption": record.caption, "summary": record.summary, "sentences": sentences, **asdict(tokens)})
    temporary = job.folder.with_name(job.folder.name + ".partial")
    shutil.rmtree(temporary, ignore_errors=True)
    dataset = datasets.Dataset.from_dict({name: [row[name] for row in rows] for name in FEATURES}, features=FEATURES)
    dataset.save_to_disk(str(temporary), num_shards=1)
    files = [{"name": p.name, "bytes": p.stat().st_size} for p in sorted(temporary.glob("*.arrow"))]
    write_json(temporary / DONE, {"format": FORMAT, "fingerprint": job.fingerprint(), "rows": len(rows),
                                  "files": files, "truncated_captions": truncated,
                                  "skipped": [{"item": i, "reason": r} for i, r in problems.problems]})
    shutil.rmtree(job.folder, ignore_errors=True)
    os.replace(temporary, job.folder)


def image_bytes(path: Path, min_side: int | None, record_id: str, problems: ProblemLog) -> bytes | None:
    """The image file's bytes, or a smaller copy's; None (reported) when it cannot be read or decoded."""
    try:
        original = path.read_bytes()
        small, image_format = _decode_smaller(path, min_side) if min_side else (None, None)
        if small is None:
            with Image.open(BytesIO(original)) as image:
                image.load()  # a full decode: truncated files fail here, not in a training worker
            return original
    except FileNotFoundError:
        problems.report(record_id, f"missing image: {path}")
        return None
    except Exception as exc:
        if not is_decoding_error(exc):
            raise
        problems.report(record_id, f"unreadable image: {path}: {decoding_cause(exc)}")
        return None
    buffer = BytesIO()
    small.save(buffer, format=image_format, **({"quality": JPEG_QUALITY} if image_format == "JPEG" else {}))
    return buffer.getvalue()


def _manifest(data: BaseDataModule, split: str, settings: Settings, jobs: list[ShardJob],
              load_problems: list[tuple[str, str]], root: Path) -> dict:
    markers = [json.loads((job.folder / DONE).read_text()) for job in jobs]
    skipped = [{"item": i, "reason": r} for i, r in load_problems] + [s for m in markers for s in m["skipped"]]
    return {
        "format": FORMAT,
        "source": {"datamodule": f"{type(data).__module__}.{type(data).__qualname__}", "split": split,
                   "settings": _settings_of(data)},
        "tokenizer": settings.tokenizer,
        "context_length": settings.tokenizer["context_length"],
        "spacy_model": settings.spacy_model,
        "min_side": settings.min_side,
        "counts": {"source_records": sum(len(j.records) for j in jobs) + len(load_problems),
                   "rows": sum(m["rows"] for m in markers), "skipped": len(skipped),
                   "truncated_captions": sum(m["truncated_captions"] for m in markers)},
        "skipped": skipped,
        "shards": [{"path": str(job.folder.relative_to(root)), "rows": m["rows"], "files": m["files"]}
                   for job, m in zip(jobs, markers)],
    }


def _settings_of(data: BaseDataModule) -> dict:
    """The datamodule's plain arguments (paths, slices, options), for the manifest's ``source``."""
    plain, lightning_own = {}, set(vars(L.LightningDataModule()))
    for key, value in vars(data).items():
        if key.startswith("_") or key in lightning_own or key in ("trainer", "problems", "train_set"):
            continue
        try:
            plain[key] = json.loads(json.dumps(value, default=_path_only))
        except TypeError:
            continue
    return plain


def _path_only(value):
    if isinstance(value, Path):
        return str(value)
    raise TypeError(type(value).__name__)
