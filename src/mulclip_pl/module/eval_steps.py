"""The LightningModule's validation, test and predict hooks, for any model with ``encode_image``,
``encode_text`` and a ``backbone`` (``ClipBackbone``): batches go to an ``Evaluator``, results are
logged per eval set and kept in ``eval_results`` (the CLI writes them to results.json).

Evaluation runs in fp32 whatever the training precision: under ``bf16-mixed`` Lightning wraps
these steps in bf16 autocast, which would round embeddings to 8 bits of mantissa and compute
similarities in bf16 (a rank can flip, and the figure would depend on the precision a model was
trained with). Autocast is switched off here, and embeddings are cast to fp32 (towers cast to
bf16 by ``bf16-true`` still run in bf16: only their outputs can be fp32).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch

from mulclip_pl.metrics.evaluator import Evaluator
from mulclip_pl.metrics.retrieval import TieRule


class EvaluationSteps:
    """Mixin for a LightningModule; call ``init_evaluation()`` in its ``__init__``."""

    def init_evaluation(self, ties: TieRule = "pessimistic") -> None:
        self.evaluator = Evaluator(ties)
        self.eval_results: dict[str, dict[str, float]] = {}

    def on_validation_epoch_start(self) -> None:
        self._prepare_evaluator("val")

    def on_test_epoch_start(self) -> None:
        self._prepare_evaluator("test")

    def _prepare_evaluator(self, stage: str) -> None:
        with fp32(self.device):
            self.evaluator.prepare(self.trainer.datamodule, stage, _float(self.encode_text),
                                   self.backbone.context_length, self.device)

    def _eval_step(self, batch: dict[str, torch.Tensor], dataloader_idx: int) -> None:
        with fp32(self.device):
            self.evaluator.update(batch, dataloader_idx, _float(self.encode_image), _float(self.encode_text),
                                  self.encode_patches)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, dataloader_idx)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, dataloader_idx)

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        """Normalised fp32 embeddings (what retrieval uses), with the ids to join them back to records."""
        with fp32(self.device):
            out = {"index": batch["index"], "image_emb": self.encode_image(batch["image"]).float()}
            if "captions" in batch:
                out.update(caption_index=batch["caption_index"], caption_image=batch["caption_image"],
                           text_emb=self.encode_text(batch["captions"]).float())
        return out

    def on_validation_epoch_end(self) -> None:
        self.eval_results = self._log_eval_metrics("val")

    def on_test_epoch_end(self) -> None:
        self.eval_results = self._log_eval_metrics("test")

    def _log_eval_metrics(self, stage: str) -> dict[str, dict[str, float]]:
        results = self.evaluator.compute()
        for name, values in results.items():
            for key, value in values.items():
                self.log(f"{stage}/{name}/{key}", value, sync_dist=False, rank_zero_only=True)
        return results


@contextmanager
def fp32(device: torch.device) -> Iterator[None]:
    """No autocast inside (Lightning's mixed-precision context is switched off for evaluation)."""
    with torch.autocast(device_type=device.type, enabled=False):
        yield


def _float(encode: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda inputs: encode(inputs).float()
