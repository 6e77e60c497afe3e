"""The MulCLIP LightningModule: backbone + calibration heads + the three objectives (METHOD.md 1-5)."""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from typing import Any, Callable, Literal

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mulclip_pl.eval.retrieval import RetrievalRecall
from mulclip_pl.eval.zeroshot import ZeroShotAccuracy, build_zeroshot_classifier
from mulclip_pl.model.backbone import ClipBackbone
from mulclip_pl.model.calibration import TokenCalibration
from mulclip_pl.model.checkpoints import build_clip
from mulclip_pl.model.long_text import KEEP_POSITIONS, LONG_CONTEXT, LongTextTokenizer
from mulclip_pl.objectives.contrastive import infonce
from mulclip_pl.objectives.sap import subcaption_patch_loss
from mulclip_pl.objectives.wpr import word_patch_reconstruction_loss

log = logging.getLogger(__name__)

Preset = Literal["full", "global_only", "no_wpr", "no_sap"]
PRESETS_WITH_WPR = ("full", "no_sap")  # presets whose loss includes lambda_word * L_word
PRESETS_WITH_SAP = ("full", "no_wpr")  # ... and lambda_sub * L_sub


class NonFiniteLossError(RuntimeError):
    """Too many consecutive steps produced a NaN/inf loss."""


@dataclass
class Losses:
    total: torch.Tensor
    terms: dict[str, torch.Tensor]


class MulCLIP(L.LightningModule):
    """MulCLIP fine-tuning of an open_clip ViT CLIP on long captions.

    Args:
        model_name: open_clip architecture (ViT-B-16, ViT-L-14, ViT-B-16-quickgelu for OpenAI
            weights, or the bundled mulclip-tiny / mulclip-test).
        pretrained: local weights file (open_clip / OpenAI .pt / .safetensors); None = random init.
        context_length: text positions after Long-CLIP's stretch (77 = no stretch).
        keep_positions: leading positions kept unchanged by the stretch.
        preset: which objectives run: full, global_only, no_wpr, no_sap (METHOD.md 5).
        long_weight, short_weight: weights of the long and short terms in L_global (paper: 1, 0.5);
            long_weight=0 trains on summaries only (the demo's stage 1).
        lambda_global, lambda_word, lambda_sub: weights of the three levels.
        calibrated_tokens: Ns per modality; None = 20% of the patch count (METHOD.md 2).
        calibration_hidden_ratio: LTC MLP hidden width as a fraction of d.
        tau_r, tau_w: WPR attention and matching temperatures.
        tau_s: SAP patch-weight temperature.
        sap_top_k_fraction: keep the top fraction of patches per sentence; None = all.
        lr, head_lr: learning rates of the CLIP towers and of the LTC heads.
        weight_decay, warmup_steps: AdamW + linear warm-up then cosine decay.
        max_logit_scale: CLIP's clamp of the learned temperature.
        max_nonfinite_steps: abort after this many consecutive NaN/inf losses (each is skipped).
        grad_checkpointing: recompute tower activations in backward (less memory, more compute).
    """

    def __init__(
        self,
        model_name: str = "mulclip-tiny",
        pretrained: str | None = None,
        context_length: int = LONG_CONTEXT,
        keep_positions: int = KEEP_POSITIONS,
        preset: Preset = "full",
        long_weight: float = 1.0,
        short_weight: float = 0.5,
        lambda_global: float = 1.0,
        lambda_word: float = 1.0,
        lambda_sub: float = 1.0,
        calibrated_tokens: int | None = None,
        calibration_hidden_ratio: float = 0.2,
        tau_r: float = 0.07,
        tau_w: float = 0.07,
        tau_s: float = 0.07,
        sap_top_k_fraction: float | None = 0.25,
        lr: float = 1e-6,
        head_lr: float = 1e-4,
        weight_decay: float = 0.01,
        warmup_steps: int = 200,
        max_logit_scale: float = 100.0,
        max_nonfinite_steps: int = 10,
        grad_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        _validate_hparams(self.hparams)
        try:
            self.backbone = ClipBackbone(build_clip(model_name, pretrained, context_length, keep_positions))
        except ValueError as exc:
            raise ValueError(f"model.model_name={model_name}: {exc}") from exc
        if grad_checkpointing:
            self.backbone.clip.set_grad_checkpointing(True)
        self.use_wpr = preset in PRESETS_WITH_WPR and lambda_word > 0
        self.use_sap = preset in PRESETS_WITH_SAP and lambda_sub > 0
        num_cal = calibrated_tokens or max(1, round(0.2 * self.backbone.num_patches))
        dim = self.backbone.embed_dim
        # Training-only heads (METHOD.md 6): absent from inference and export.
        self.image_calibration = TokenCalibration(dim, num_cal, calibration_hidden_ratio) if self.use_wpr else None
        self.text_calibration = TokenCalibration(dim, num_cal, calibration_hidden_ratio) if self.use_wpr else None
        self.sap_top_k = (
            max(1, round(sap_top_k_fraction * self.backbone.num_patches)) if sap_top_k_fraction else None
        )
        self._nonfinite_streak = 0
        self._schedule_length: int | None = None
        self._skipped: list[str] = []
        self._eval_metrics = nn.ModuleDict()
        self._eval_sets: list = []
        self._zeroshot_weights: dict[str, torch.Tensor] = {}
        self.eval_results: dict[str, dict[str, float]] = {}

    # ------------------------------------------------------------------ inference API
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, d) normalised image embeddings (plain CLIP cost)."""
        return F.normalize(self.backbone.encode_image(images).v_cls, dim=-1)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """(N, L) token ids -> (N, d) normalised text embeddings (plain CLIP cost)."""
        return F.normalize(self.backbone.encode_text(tokens, with_tokens=False).t_eot, dim=-1)

    def preprocess_config(self) -> dict[str, Any]:
        """What a datamodule needs to match this model: image size, normalisation, context."""
        visual = self.backbone.clip.visual
        size = visual.image_size
        return {
            "image_size": size[0] if isinstance(size, tuple) else size,
            "mean": getattr(visual, "image_mean", None),
            "std": getattr(visual, "image_std", None),
            "context_length": self.backbone.context_length,
        }

    def logit_scale(self) -> torch.Tensor:
        return self.backbone.logit_scale.exp().clamp(max=self.hparams.max_logit_scale)

    # ------------------------------------------------------------------ objectives
    def compute_losses(self, batch: dict[str, torch.Tensor]) -> Losses:
        """All MulCLIP terms for one batch (METHOD.md equations 1, 3, 4, 5)."""
        hp = self.hparams
        image = self.backbone.encode_image(batch["image"])
        v_cls = F.normalize(image.v_cls, dim=-1)
        v_loc = F.normalize(image.v_loc, dim=-1)
        long = self.backbone.encode_text(batch["long"], with_tokens=self.use_wpr)
        t_long = F.normalize(long.t_eot, dim=-1)
        t_short, t_sub = self._encode_short_and_sentences(batch)
        scale = self.logit_scale()

        terms = {
            "global_long": infonce(v_cls, t_long, scale),
            "global_short": infonce(v_cls, t_short, scale),
        }
        terms["global"] = hp.long_weight * terms["global_long"] + hp.short_weight * terms["global_short"]
        total = hp.lambda_global * terms["global"]
        if self.use_wpr:
            v_cal = self.image_calibration(v_loc)
            t_cal = self.text_calibration(F.normalize(long.t_tokens, dim=-1), long.word_mask)
            wpr = word_patch_reconstruction_loss(v_cal, t_cal, hp.tau_r, hp.tau_w)
            terms.update(word=wpr.total, word_image=wpr.image, word_text=wpr.text)
            total = total + hp.lambda_word * wpr.total
        if self.use_sap:
            terms["sub"] = subcaption_patch_loss(t_sub, batch["sub_mask"], v_loc, scale, hp.tau_s, self.sap_top_k)
            total = total + hp.lambda_sub * terms["sub"]
        return Losses(total=total, terms=terms)

    def _encode_short_and_sentences(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One text pass for the summaries and the *present* sentences: (B, d), (B, M, d) (None without SAP)."""
        short, subs, sub_mask = batch["short"], batch["sub"], batch["sub_mask"]
        if not self.use_sap:
            return self.encode_text(short), None
        width = max(short.shape[1], subs.shape[2])
        texts = torch.cat([F.pad(short, (0, width - short.shape[1])), F.pad(subs[sub_mask], (0, width - subs.shape[2]))])
        encoded = self.encode_text(texts)
        t_short = encoded[: short.shape[0]]
        t_sub = encoded.new_zeros(*sub_mask.shape, encoded.shape[-1])
        t_sub[sub_mask] = encoded[short.shape[0]:]
        return t_short, t_sub

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        self._skipped.extend(batch.get("skipped", []))
        if "image" not in batch:  # every sample of this batch was bad input (counted above)
            return None
        losses = self.compute_losses(batch)
        if self._skip_nonfinite(losses.total):
            return None
        batch_size = batch["image"].shape[0]
        self.log("train/loss", losses.total, prog_bar=True, batch_size=batch_size)
        for name, value in losses.terms.items():
            self.log(f"train/{name}", value, batch_size=batch_size)
        self.log("train/logit_scale", self.logit_scale(), batch_size=batch_size)
        self.log("data/skipped_samples", float(batch.get("n_skipped", 0)), reduce_fx="sum", batch_size=batch_size)
        self.log("data/truncated_captions", float(batch.get("n_truncated", 0)), reduce_fx="sum", batch_size=batch_size)
        return losses.total

    def _skip_nonfinite(self, loss: torch.Tensor) -> bool:
        """True when any rank's loss is NaN/inf: every rank then skips the step together."""
        bad = (~torch.isfinite(loss.detach())).float()
        if self.trainer is not None and self.trainer.world_size > 1:
            bad = self.trainer.strategy.reduce(bad, reduce_op="sum")
        if bad.item() == 0:
            self._nonfinite_streak = 0
            return False
        self._nonfinite_streak += 1
        self.log("train/nonfinite_skipped", 1.0, reduce_fx="sum", on_step=False, on_epoch=True)
        log.warning("non-finite loss at step %d: step skipped (%d in a row)", self.global_step, self._nonfinite_streak)
        if self._nonfinite_streak >= self.hparams.max_nonfinite_steps:
            raise NonFiniteLossError(
                f"{self._nonfinite_streak} consecutive non-finite losses (last at step {self.global_step}). "
                "Lower the learning rate, check the data for broken images, or resume from the last checkpoint."
            )
        return True

    def on_train_epoch_end(self) -> None:
        """Report bad input skipped this epoch (never silently dropped)."""
        if self._skipped:
            log.warning("epoch %d: skipped %d bad samples, e.g. %s", self.current_epoch, len(self._skipped), self._skipped[:3])
        self._skipped = []

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["rng_states"] = _rng_states()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Resume continues the global random streams (shuffling and per-sample choices are seeded by the data)."""
        if "rng_states" in checkpoint:
            _set_rng_states(checkpoint["rng_states"])

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        with torch.no_grad():  # CLIP clamps the learned temperature after each step
            self.backbone.logit_scale.clamp_(0, math.log(self.hparams.max_logit_scale))

    def configure_optimizers(self):
        hp = self.hparams
        decay, no_decay, heads = [], [], []
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            if name.startswith(("image_calibration", "text_calibration")):
                heads.append(param)
            elif param.ndim < 2 or "embedding" in name or "logit_scale" in name or name.endswith(".bias"):
                no_decay.append(param)
            else:
                decay.append(param)
        groups = [
            {"params": decay, "lr": hp.lr, "weight_decay": hp.weight_decay},
            {"params": no_decay, "lr": hp.lr, "weight_decay": 0.0},
        ]
        if heads:
            groups.append({"params": heads, "lr": hp.head_lr, "weight_decay": hp.weight_decay})
        optimizer = torch.optim.AdamW(groups, betas=(0.9, 0.98), eps=1e-6)
        # The length is read lazily: asking for it here would build the train loader before a
        # resumed run restores the loader's position, and Lightning would not restore it after.
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(hp.warmup_steps, self._total_steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def _total_steps(self) -> int:
        if self._schedule_length is None:
            self._schedule_length = max(1, int(self.trainer.estimated_stepping_batches)) if self._trainer else 1
        return self._schedule_length

    # ------------------------------------------------------------------ evaluation
    def on_validation_epoch_start(self) -> None:
        self._prepare_eval_metrics(self.trainer.datamodule, "val")

    def on_test_epoch_start(self) -> None:
        self._prepare_eval_metrics(self.trainer.datamodule, "test")

    def _prepare_eval_metrics(self, datamodule: Any, stage: str) -> None:
        self._eval_metrics = nn.ModuleDict()
        self._eval_sets = list(datamodule.eval_sets(stage)) if hasattr(datamodule, "eval_sets") else []
        tokenizer = LongTextTokenizer(self.backbone.context_length)
        for spec in self._eval_sets:
            if spec.kind == "retrieval":
                self._eval_metrics[spec.name] = RetrievalRecall().to(self.device)
            else:
                self._zeroshot_weights[spec.name] = build_zeroshot_classifier(
                    self.encode_text, tokenizer, spec.class_names, self.device
                )
                self._eval_metrics[spec.name] = ZeroShotAccuracy().to(self.device)

    def _eval_step(self, batch: dict[str, torch.Tensor], dataloader_idx: int) -> None:
        spec = self._eval_sets[dataloader_idx]
        metric = self._eval_metrics[spec.name]
        image_emb = self.encode_image(batch["image"])
        if spec.kind == "retrieval":
            text_emb = self.encode_text(batch["captions"])
            metric.update(image_emb, batch["index"], text_emb, batch["caption_index"], batch["caption_image"])
        else:
            metric.update(image_emb @ self._zeroshot_weights[spec.name].T, batch["label"], batch["index"])

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
        results = {}
        for name, metric in self._eval_metrics.items():
            values = {k: float(v) for k, v in metric.compute().items()}
            results[name] = values
            for key, value in values.items():
                self.log(f"{stage}/{name}/{key}", value, sync_dist=False, rank_zero_only=True)
            metric.reset()
        return results


def _rng_states() -> dict[str, Any]:
    """Random states as tensors and plain tuples, so that ``torch.load(weights_only=True)`` accepts them."""
    name, keys, position, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": (name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached)}


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    name, keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached))


def _warmup_cosine(warmup: int, total_steps: Callable[[], int]):
    """Linear warm-up then cosine decay; ``total_steps`` is only called once past step 0."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if step == 0:
            return 1.0
        progress = (step - warmup) / max(1, total_steps() - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _validate_hparams(hp: Any) -> None:
    """Fail before any data is read, naming the offending argument."""
    checks = [
        (hp.context_length >= 77 or hp.context_length > hp.keep_positions, "model.context_length", "must exceed keep_positions"),
        (0 <= hp.keep_positions < 77, "model.keep_positions", "must be in [0, 77)"),
        (hp.calibrated_tokens is None or hp.calibrated_tokens >= 1, "model.calibrated_tokens", "must be >= 1"),
        (min(hp.tau_r, hp.tau_w, hp.tau_s) > 0, "model.tau_r/tau_w/tau_s", "temperatures must be > 0"),
        (hp.sap_top_k_fraction is None or 0 < hp.sap_top_k_fraction <= 1, "model.sap_top_k_fraction", "must be in (0, 1]"),
        (min(hp.lambda_global, hp.lambda_word, hp.lambda_sub, hp.long_weight, hp.short_weight) >= 0, "model.lambda_*", "weights must be >= 0"),
        (hp.lr > 0 and hp.head_lr > 0, "model.lr/head_lr", "must be > 0"),
        (hp.max_nonfinite_steps >= 1, "model.max_nonfinite_steps", "must be >= 1"),
    ]
    for ok, key, why in checks:
        if not ok:
            raise ValueError(f"{key}: {why} (got {dict(hp)})")
