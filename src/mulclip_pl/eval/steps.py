"""The LightningModule's validation, test and predict hooks, for any model with ``encode_image``,
``encode_text`` and a ``backbone`` (``ClipBackbone``): batches go to an ``Evaluator``, results are
logged per eval set and kept in ``eval_results`` (the CLI writes them to results.json)."""

from __future__ import annotations

import torch

from mulclip_pl.eval.evaluator import Evaluator


class EvaluationSteps:
    """Mixin for a LightningModule; call ``init_evaluation()`` in its ``__init__``."""

    def init_evaluation(self) -> None:
        self.evaluator = Evaluator()
        self.eval_results: dict[str, dict[str, float]] = {}

    def on_validation_epoch_start(self) -> None:
        self._prepare_evaluator("val")

    def on_test_epoch_start(self) -> None:
        self._prepare_evaluator("test")

    def _prepare_evaluator(self, stage: str) -> None:
        self.evaluator.prepare(self.trainer.datamodule, stage, self.encode_text, self.backbone.context_length,
                               self.device)

    def _eval_step(self, batch: dict[str, torch.Tensor], dataloader_idx: int) -> None:
        self.evaluator.update(batch, dataloader_idx, self.encode_image, self.encode_text, self.backbone.encode_image)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, dataloader_idx)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, dataloader_idx)

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        """Normalised embeddings (what retrieval uses), with the ids to join them back to records."""
        out = {"index": batch["index"], "image_emb": self.encode_image(batch["image"])}
        if "captions" in batch:
            out.update(caption_index=batch["caption_index"], caption_image=batch["caption_image"],
                       text_emb=self.encode_text(batch["captions"]))
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
