"""Plain records that corpus readers return, and the bookkeeping of bad input.

Readers never silently drop anything: each problem is either raised (policy ``error``) or
recorded in a ``ProblemLog`` (policy ``skip``) that is reported with counts and examples.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mulclip_pl.errors import DataError

log = logging.getLogger(__name__)

BadInputPolicy = Literal["error", "skip"]


@dataclass(frozen=True)
class Record:
    """One image with its captions. ``caption`` is the long caption (or the first of several)."""

    id: str
    image: Path
    caption: str
    summary: str | None = None
    extra_captions: tuple[str, ...] = ()
    negatives: tuple[str, ...] = ()  # hard negatives of ``caption`` (evaluation only)

    @property
    def captions(self) -> tuple[str, ...]:
        return (self.caption, *self.extra_captions)


@dataclass(frozen=True)
class LabeledImage:
    """One image with a class label (zero-shot classification)."""

    id: str
    image: Path | None
    label: int
    pixels: object | None = None  # an in-memory image (CIFAR's pickles), when there is no file


@dataclass
class ProblemLog:
    """Counted, reported bad input under the ``skip`` policy; raises under ``error``."""

    policy: BadInputPolicy = "error"
    where: str = ""
    problems: list[tuple[str, str]] = field(default_factory=list)

    def report(self, item: str, reason: str) -> None:
        if self.policy == "error":
            raise DataError(f"{self.where}: {item}: {reason} (set data.bad_input='skip' to skip and count such items)")
        self.problems.append((item, reason))

    def summary(self) -> str:
        reasons = Counter(reason.split(":")[0] for _, reason in self.problems)
        examples = "; ".join(f"{item}: {reason}" for item, reason in self.problems[:3])
        return f"{self.where}: skipped {len(self.problems)} items ({dict(reasons)}), e.g. {examples}"

    def log_summary(self) -> None:
        if self.problems:
            log.warning(self.summary())


def require_root(root: str | Path, what: str, expected: str) -> Path:
    """A data root that exists, or an error describing the layout that was expected there."""
    path = Path(root).expanduser()
    if not path.exists():
        raise DataError(f"{what} root not found: {path}. Expected {expected}. Check data.root.")
    return path


def report_duplicates(records: list[Record], where: str) -> list[str]:
    """Ids that occur more than once (logged: retrieval metrics would double count them)."""
    counts = Counter(r.id for r in records)
    dupes = [i for i, n in counts.items() if n > 1]
    if dupes:
        log.warning("%s: %d duplicate ids, e.g. %s", where, len(dupes), dupes[:5])
    return dupes


def report_overlap(train: list[Record], held_out: list[Record], where: str) -> set[Path]:
    """Images present in both a training and an evaluation split (logged)."""
    overlap = {r.image for r in train} & {r.image for r in held_out}
    if overlap:
        log.warning("%s: %d images are in both the training and the evaluation split, e.g. %s",
                    where, len(overlap), sorted(map(str, overlap))[:3])
    return overlap
