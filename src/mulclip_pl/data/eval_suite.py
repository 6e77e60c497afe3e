"""``EvalSuite``: evaluate on several data sets in one ``mulclip-pl test`` call."""

from __future__ import annotations

import lightning as L

from mulclip_pl.data.base import BaseDataModule, EvalSet


class EvalSuite(L.LightningDataModule):
    """Evaluate on several data sets in one ``mulclip-pl test`` call."""

    def __init__(self, datasets: list[BaseDataModule]) -> None:
        super().__init__()
        if not datasets:
            raise ValueError("data.datasets must list at least one data set")
        names = [d.name for d in datasets]
        if len(set(names)) != len(names):
            raise ValueError(f"data.datasets have repeated names {names}; give each a distinct 'name'")
        self.datasets = datasets

    def setup(self, stage: str | None = None) -> None:
        for dm in self.datasets:
            dm.trainer = self.trainer
            dm.setup(stage)

    def eval_sets(self, stage: str) -> list[EvalSet]:
        return [s for dm in self.datasets for s in dm.eval_sets(stage)]

    def val_dataloader(self):
        return [loader for dm in self.datasets for loader in dm.val_dataloader()]

    def test_dataloader(self):
        return [loader for dm in self.datasets for loader in dm.test_dataloader()]
