"""Bad training input, accounted for across ranks: counted each epoch and listed once in the run folder.

Under ``data.bad_input=skip`` a bad training item is replaced by a good one (``data/datasets.py``),
so every rank keeps its batch size; what remains is to say so. Each rank only sees its own share,
so the epoch's count is summed over ranks and rank 0 appends each bad item it has not listed yet,
with its reason, to ``bad_inputs.tsv`` next to the run's logs (items the readers refused at setup
included). A resumed run reads the file back, so an item stays listed once.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L

from mulclip_pl.distributed import gather_from_ranks
from mulclip_pl.training.run_dir import output_dir

log = logging.getLogger(__name__)
LIST_FILE = "bad_inputs.tsv"


class BadInputReport:
    """Collects the ``skipped`` entries of training batches ("item: reason") on each rank."""

    def __init__(self) -> None:
        self.epoch_items: list[str] = []
        self._listed: set[str] | None = None

    def add(self, batch: dict) -> None:
        self.epoch_items.extend(batch.get("skipped", []))

    def start(self, trainer: L.Trainer) -> None:
        """List what the data module's readers refused at setup (every rank calls it)."""
        problems = getattr(trainer.datamodule, "problems", []) if trainer.datamodule is not None else []
        found = [f"{item}: {reason}" for problems_log in problems for item, reason in problems_log.problems]
        self._write(found, output_dir(trainer), trainer.is_global_zero)

    def end_epoch(self, trainer: L.Trainer) -> int:
        """Sum this epoch's bad items over ranks, list new ones, log a line (every rank calls it:
        gathering, and ``trainer.log_dir``, are collectives); the total is returned."""
        items = [item for rank_items in gather_from_ranks(self.epoch_items, trainer.world_size) for item in rank_items]
        path = output_dir(trainer) / LIST_FILE
        self.epoch_items = []
        if items and trainer.is_global_zero:
            log.warning("epoch %d: %d bad training samples over %d rank(s) were replaced by others (listed in %s), "
                        "e.g. %s", trainer.current_epoch, len(items), trainer.world_size, path, items[:2])
        self._write(items, path.parent, trainer.is_global_zero)
        return len(items)

    def _write(self, items: list[str], folder: Path, is_global_zero: bool) -> None:
        if not is_global_zero or not items:
            return
        path = folder / LIST_FILE
        if self._listed is None:
            self._listed = set(_read_items(path))
        rows = {}
        for entry in items:
            item, _, reason = entry.partition(": ")
            if item not in self._listed and item not in rows:
                rows[item] = reason.replace("\t", " ").replace("\n", " ")
        if rows:
            folder.mkdir(parents=True, exist_ok=True)
            new_file = not path.exists()
            with path.open("a") as handle:
                if new_file:
                    handle.write("item\treason\n")
                handle.writelines(f"{item}\t{reason}\n" for item, reason in rows.items())
            self._listed.update(rows)


def _read_items(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [line.split("\t", 1)[0] for line in path.read_text().splitlines()[1:] if line]
