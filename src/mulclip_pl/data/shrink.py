"""``mulclip-pl shrink-images``: a training copy of a data set with its images scaled down.

Decoding full-size photos (DOCCI's and SA-1B's are 1-2k pixels a side) is most of a loader
worker's time, while training at 224 px needs a shorter side of about 256. The copy mirrors the
source tree: images keep their names and formats (so every corpus reader works on it unchanged,
``--data.root COPY``), other files are copied as they are. Files are written to a temporary name
and renamed, and files already in the copy are skipped, so an interrupted run resumes. Unreadable
images are copied unchanged and listed: the loader's bad-input policy then reports them as usual.
Evaluate on the originals: a second resize changes pixels slightly.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from mulclip_pl.data.images import is_decoding_error, upright

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
JPEG_QUALITY = 95


@dataclass
class ShrinkReport:
    resized: int = 0
    copied: int = 0  # non-images and images already small enough
    skipped_existing: int = 0
    unreadable: list[str] = field(default_factory=list)


def shrink_image(source: Path, target: Path, min_side: int) -> str:
    """Write ``source`` to ``target`` with its shorter side at most ``min_side``; returns what was done.

    Only decoding errors make an image "unreadable"; a failing write (a full disk) raises.
    """
    try:
        small, image_format = _decode_smaller(source, min_side)
    except Exception as exc:
        if not is_decoding_error(exc):
            raise
        _copy(source, target)
        return "unreadable"
    if small is None:
        _copy(source, target)
        return "copied"
    options = {"quality": JPEG_QUALITY} if image_format == "JPEG" else {}
    _write_atomically(target, lambda path: small.save(path, format=image_format, **options))
    return "resized"


def _decode_smaller(source: Path, min_side: int) -> tuple[Image.Image | None, str | None]:
    """The image upright, resized to shorter side ``min_side``, and its format; None if already that small.

    Upright: the copy is written without EXIF, so its pixels are turned here as a viewer turns them
    (``upright``); a file copied unchanged keeps its tag, which the loader applies. Never both.
    """
    with Image.open(source) as image:
        scale = min_side / min(image.size)
        if scale >= 1:
            return None, image.format
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        mode = image.mode if image.mode in ("RGB", "L", "RGBA") else "RGB"
        image.draft(mode, size)  # JPEG only: decode at 1/2, 1/4 or 1/8 scale, much faster
        turned = upright(image)
        if turned.size != image.size:  # a quarter turn swaps the sides
            size = size[::-1]
        return turned.convert(mode).resize(size, Image.Resampling.BICUBIC), image.format


def _write_atomically(target: Path, write: Callable[[Path], object]) -> None:
    """``write`` to a temporary name, then rename: a target is complete or absent, never half-written."""
    temporary = target.with_name(target.name + ".partial")
    write(temporary)
    os.replace(temporary, target)


def _copy(source: Path, target: Path) -> None:
    _write_atomically(target, lambda path: shutil.copy2(source, path))


def _process(job: tuple[Path, Path, int]) -> tuple[str, str]:
    source, target, min_side = job
    if source.suffix.lower() in IMAGE_SUFFIXES:
        return shrink_image(source, target, min_side), str(source)
    _copy(source, target)
    return "copied", str(source)


def shrink_images(src: str, dst: str, min_side: int = 256, workers: int = 2) -> ShrinkReport:
    """Mirror ``src`` into ``dst`` with every image's shorter side scaled down to ``min_side``.

    Args:
        src: the data set's root folder (as given to ``--data.root``).
        dst: the copy to create; use it as ``--data.root`` for training.
        min_side: shorter side of the copies (>= the training image size; 256 for 224 px models).
        workers: processes decoding and encoding in parallel.
    """
    source_root, target_root = Path(src), Path(dst)
    if not source_root.is_dir():
        raise FileNotFoundError(f"shrink-images: source folder not found: {source_root}")
    if target_root.resolve() == source_root.resolve() or source_root.resolve() in target_root.resolve().parents:
        raise ValueError(f"shrink-images: the copy ({target_root}) must lie outside the source ({source_root})")
    report, jobs = ShrinkReport(), []
    for source in sorted(p for p in source_root.rglob("*") if p.is_file()):
        target = target_root / source.relative_to(source_root)
        if target.is_file():
            report.skipped_existing += 1
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        jobs.append((source, target, min_side))
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        for outcome, name in tqdm(pool.map(_process, jobs, chunksize=16), total=len(jobs), desc="shrink-images"):
            if outcome == "unreadable":
                report.unreadable.append(name)
            else:
                setattr(report, outcome, getattr(report, outcome) + 1)
    _print_report(report, target_root)
    return report


def _print_report(report: ShrinkReport, target: Path) -> None:
    print(f"{target}: {report.resized} images resized, {report.copied} files copied, "
          f"{report.skipped_existing} already there")
    if report.unreadable:
        print(f"{len(report.unreadable)} unreadable images copied unchanged (the loader will report them), "
              f"e.g. {report.unreadable[:3]}")
