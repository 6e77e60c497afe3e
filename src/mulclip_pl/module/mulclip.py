"""The MulCLIP LightningModule: backbone + calibration heads + the three objectives (docs/METHOD.md §1-§7).

Its hooks for fit (``training_hooks.py``) and for validate / test / predict (``eval_steps.py``) are mixins;
``MulCLIP.load_trained`` brings a trained one back from its checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.strategies import FSDPStrategy

from mulclip_pl.errors import PretrainedWeightsError
from mulclip_pl.metrics.retrieval import TieRule
from mulclip_pl.model.backbone import ClipBackbone, ImageFeatures
from mulclip_pl.model.build import build_clip
from mulclip_pl.model.calibration import TokenCalibration
from mulclip_pl.model.compiled import CompileMode, compile_towers
from mulclip_pl.model.long_text import KEEP_POSITIONS, PositionScheme
from mulclip_pl.model.value_attention import check_value_value_block
from mulclip_pl.module.chunked_step import cached_features
from mulclip_pl.module.eval_steps import EvaluationSteps
from mulclip_pl.module.hparams import (
    PRESETS_WITH_SAP, PRESETS_WITH_WPR, Calibration, PatchTokens, Preset, validate_hparams,
)
from mulclip_pl.module.init_from import load_heads, towers_state
from mulclip_pl.module.sample_features import sample_features
from mulclip_pl.module.training_hooks import TrainingHooks
from mulclip_pl.objectives.contrastive import infonce
from mulclip_pl.objectives.identical_texts import text_keys
from mulclip_pl.objectives.sap import sap_contrast
from mulclip_pl.tokenizer import LONG_CONTEXT
from mulclip_pl.training.bad_inputs import BadInputReport
from mulclip_pl.training.nonfinite import NonFiniteGuard
from mulclip_pl.weights.checkpoints import read_lightning_checkpoint
from mulclip_pl.weights.one_element import match_one_element_shapes


@dataclass
class Losses:
    total: torch.Tensor
    terms: dict[str, torch.Tensor]


class MulCLIP(TrainingHooks, EvaluationSteps, L.LightningModule):
    """MulCLIP fine-tuning of an open_clip ViT CLIP on long captions (docs/METHOD.md).

    Args:
        model_name: open_clip architecture (ViT-B-16, ViT-L-14, ViT-B-16-quickgelu for OpenAI
            weights, or the bundled mulclip-tiny / mulclip-test).
        pretrained: CLIP weights to start from: a local file (open_clip checkpoint, OpenAI .pt,
            .safetensors, a Long-CLIP / mulclip-pl export with 248 positions) or a name open_clip
            resolves and caches (a tag such as openai, hf-hub:ORG/REPO, a URL). None = random init.
        init_from: a Lightning .ckpt written by ``mulclip-pl fit`` to start from: its CLIP towers
            (77 or 248 positions; 77 are stretched) and, when shapes match, its calibration heads.
            Weights only: optimizer, schedule and epoch start fresh (use --ckpt_path to resume a run).
        context_length: text positions after Long-CLIP's stretch (77 = no stretch).
        keep_positions: leading positions the stretch keeps unchanged (Long-CLIP: 20).
        position_scheme: how the stretched text positions train: 'longclip' (Long-CLIP's code:
            positions < keep_positions read a frozen copy and never move, the rest a trainable
            one) or 'single' (one trainable table). Exports hold one merged table either way.
        preset: which objectives run: full, global_only, no_wpr or no_sap (docs/METHOD.md §6).
        long_weight: weight of L(v_cls, t_long) inside the global loss (paper: 1).
        short_weight: weight of L(v_cls, t_short) inside the global loss (paper: 0.5).
        lambda_global: weight of the global loss in the total.
        lambda_word: weight of word-patch reconstruction (WPR) in the total.
        lambda_sub: weight of subcaption-aggregated patch alignment (SAP) in the total.
        calibrated_tokens: calibrated tokens per modality; None = 20% of the patch count.
        calibration_hidden_ratio: width of the calibration MLP as a fraction of the embedding size.
        calibration: which local tokens WPR sees through a Local Token Calibration head: 'both'
            (the paper), 'image' (word tokens enter WPR raw, padding masked: no text head) or
            'none' (raw patches and raw words: no heads). The last two are reviewer ablations.
        word_warmup_steps: lambda_word rises linearly from 0 over these first steps (0: constant).
        wpr_patch_block: vision block whose patch tokens WPR calibrates and reconstructs (-1: the
            last, the paper; an earlier block keeps more local detail). SAP keeps the last block's.
        patch_tokens: the patch tokens WPR and SAP train, the maps and box pooling read: 'clip' (the paper's last
            block) or 'value_value' (a value-value attention branch beside it, CLIP Surgery's; v_cls and exports
            unchanged; model/value_attention.py). Not under FSDP.
        tau_r: WPR temperature of the word-to-patch attention that reconstructs tokens.
        tau_w: WPR temperature of the matching between tokens and their reconstructions.
        tau_s: SAP temperature of the sentence-to-patch aggregation weights.
        sap_top_k_fraction: SAP keeps this fraction of the patches per sentence; None = all.
        sentence_features: SAP's sentence embeddings: 'encoded' (the paper: each sentence through the
            text tower on its own) or 'span' (beyond the paper: the long caption's token outputs
            averaged over the sentence's tokens; no extra text pass, see model/sentence_features.py).
        identical_texts_as_negatives: True = the paper's plain losses; False (beyond the paper) = a text
            identical to an image's own is not its negative, and SAP averages only sentence indices with one.
        lr: learning rate of the CLIP towers.
        head_lr: learning rate of the calibration heads (new, so larger than lr).
        weight_decay: AdamW weight decay of matrices (not of biases, norms, embeddings, logit scale).
        warmup_steps: linear warm-up steps before the cosine decay.
        max_logit_scale: clamp of CLIP's learned inverse temperature (CLIP: 100).
        max_nonfinite_steps: abort after this many consecutive NaN/inf losses (each is skipped).
        grad_checkpointing: recompute tower activations in backward (less memory, more compute).
        compile: torch.compile the towers' residual blocks when a run starts (``configure_model``; names,
            checkpoints and exports stay those of eager; model/compiled.py). Pays off for long runs on a
            GPU; the first steps wait for the compiler (benchmarks/README.md, "torch.compile").
        compile_mode: torch.compile's mode ('default', 'reduce-overhead', 'max-autotune', ...).
        compile_dynamic: torch.compile's ``dynamic``: True = sizes as symbols from the first step (text
            lengths and counts change every batch: one graph per tower), None = after the first change.
        encode_chunk: encode each batch in chunks of this many samples, with the gradients of the whole
            batch (gradient caching, docs/METHOD.md §8): one chunk's activations, ~1 extra forward. None = all.
        trust_pickle: read pretrained / init_from / --ckpt_path files that need full unpickling,
            which can run code hidden in them: only for files you trust (default: refuse them).
        cache_dir: where weights given by name (an open_clip tag, hf-hub:ORG/REPO, a URL) are cached
            and looked for, as open_clip's cache_dir; None = open_clip's defaults (HF_HOME, ~/.cache/clip).
        eval_ties: equal retrieval scores: 'pessimistic' (count against the model; a collapsed
            model cannot score by ties) or 'clip_benchmark' (data-set order, its exact R@K).
    """

    def __init__(
        self,
        model_name: str = "mulclip-tiny",
        pretrained: str | None = None,
        init_from: str | None = None,
        context_length: int = LONG_CONTEXT,
        keep_positions: int = KEEP_POSITIONS,
        position_scheme: PositionScheme = "longclip",
        preset: Preset = "full",
        long_weight: float = 1.0,
        short_weight: float = 0.5,
        lambda_global: float = 1.0,
        lambda_word: float = 1.0,
        lambda_sub: float = 1.0,
        calibrated_tokens: int | None = None,
        calibration_hidden_ratio: float = 0.2,
        calibration: Calibration = "both",
        word_warmup_steps: int = 0,
        wpr_patch_block: int = -1,
        patch_tokens: PatchTokens = "clip",
        tau_r: float = 0.07,
        tau_w: float = 0.07,
        tau_s: float = 0.07,
        sap_top_k_fraction: float | None = 0.25,
        sentence_features: Literal["encoded", "span"] = "encoded",
        identical_texts_as_negatives: bool = False,
        lr: float = 1e-6,
        head_lr: float = 1e-4,
        weight_decay: float = 0.01,
        warmup_steps: int = 200,
        max_logit_scale: float = 100.0,
        max_nonfinite_steps: int = 10,
        grad_checkpointing: bool = False,
        compile: bool = False,
        compile_mode: CompileMode = "default",
        compile_dynamic: bool | None = True,
        encode_chunk: int | None = None,
        trust_pickle: bool = False,
        cache_dir: str | None = None,
        eval_ties: TieRule = "pessimistic",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        validate_hparams(self.hparams)
        start = read_lightning_checkpoint(init_from, trust_pickle=trust_pickle) if init_from else None
        try:
            self.backbone = ClipBackbone(build_clip(model_name, pretrained, context_length, keep_positions,
                                                    state=towers_state(start), source=init_from,
                                                    position_scheme=position_scheme, trust_pickle=trust_pickle,
                                                    cache_dir=cache_dir, nonscalar_logit_scale=True))
        except ValueError as exc:
            raise ValueError(f"model.model_name={model_name}: {exc}") from exc
        depth = self.backbone.vision_depth
        if not -depth <= wpr_patch_block < depth:
            raise ValueError(f"model.wpr_patch_block={wpr_patch_block}: {model_name} has {depth} vision blocks "
                             f"(use -{depth}..{depth - 1}; -1 is the last)")
        if patch_tokens == "value_value":
            check_value_value_block(self.backbone.clip.visual.transformer.resblocks[-1], model_name)
        if grad_checkpointing:
            self.backbone.clip.set_grad_checkpointing(True)
        self.use_wpr = preset in PRESETS_WITH_WPR and lambda_word > 0
        self.use_sap = preset in PRESETS_WITH_SAP and lambda_sub > 0
        last = wpr_patch_block % depth == depth - 1  # the default path: WPR on v_loc, no hook
        self._wpr_tap_block = wpr_patch_block if self.use_wpr and not last else None
        num_cal = calibrated_tokens or max(1, round(0.2 * self.backbone.num_patches))
        dim = self.backbone.embed_dim
        # Training-only heads (docs/METHOD.md §7): absent from inference and export.
        with_image_head = self.use_wpr and calibration in ("both", "image")
        with_text_head = self.use_wpr and calibration == "both"
        self.image_calibration = TokenCalibration(dim, num_cal, calibration_hidden_ratio) if with_image_head else None
        self.text_calibration = TokenCalibration(dim, num_cal, calibration_hidden_ratio) if with_text_head else None
        self.sap_top_k = (
            max(1, round(sap_top_k_fraction * self.backbone.num_patches)) if sap_top_k_fraction else None
        )
        self.register_load_state_dict_pre_hook(match_one_element_shapes)  # 0-dim scalars of older checkpoints
        if start is not None:
            load_heads(self, start, init_from)
        self._nonfinite = NonFiniteGuard(max_nonfinite_steps)
        self._schedule_length: int | None = None
        self._bad_inputs = BadInputReport()
        self._truncated = 0
        self._compiled = False
        self.init_evaluation(eval_ties)

    def configure_model(self) -> None:
        """Lightning's hook for changing the model before a strategy wraps it (once per fit / validate /
        test / predict call): ``--model.compile`` compiles the towers here, so that FSDP wraps compiled blocks."""
        if self.hparams.patch_tokens == "value_value" and isinstance(self.trainer.strategy, FSDPStrategy):
            raise ValueError("model.patch_tokens=value_value reads the last vision block's weights outside its forward, "
                             "where FSDP holds them sharded: use DDP (configs/strategies/ddp.yaml) or patch_tokens=clip")
        if self.hparams.compile and not self._compiled:
            compile_towers(self.backbone.clip, self.hparams.compile_mode, self.hparams.compile_dynamic)
            self._compiled = True

    @classmethod
    def load_trained(cls, ckpt: str | Path, trust_pickle: bool = False) -> MulCLIP:
        """The module saved in ``ckpt`` (a ``mulclip-pl fit`` checkpoint), in eval mode, on the CPU: for
        export, maps, metrics and notebooks.

        Its weights come from the checkpoint alone: the files it was first built from
        (``pretrained`` / ``init_from``) are not read again, and need not exist any more. The file
        is read with ``weights_only=True``, so a crafted checkpoint cannot run code; one that needs
        full unpickling is refused unless ``trust_pickle`` (only for files you trust).
        """
        path = Path(ckpt).expanduser()
        if not path.is_file():
            raise PretrainedWeightsError(f"checkpoint not found: {path}")
        state, hparams = read_lightning_checkpoint(path, with_hparams=True, trust_pickle=trust_pickle)
        arguments = {k: v for k, v in hparams.items() if not k.startswith("_")}  # Lightning's own entries (_instantiator)
        # No file is read again, so the saved trust_pickle has nothing to apply to: reset it.
        module = cls(**{**arguments, "pretrained": None, "init_from": None, "trust_pickle": False})
        module.load_state_dict(state)
        return module.eval()

    # ------------------------------------------------------------------ inference API
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, d) normalised image embeddings (plain CLIP cost)."""
        return F.normalize(self.backbone.encode_image(images).v_cls, dim=-1)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """(N, L) token ids -> (N, d) normalised text embeddings (plain CLIP cost)."""
        return F.normalize(self.backbone.encode_text(tokens, with_tokens=False).t_eot, dim=-1)

    def encode_patches(self, images: torch.Tensor, tap_block: int | None = None) -> ImageFeatures:
        """Unnormalised ``v_cls`` and the patch tokens that the local terms train, the maps show and box
        retrieval pools (``patch_tokens``); ``tap_block`` as ``ClipBackbone.encode_image``."""
        return self.backbone.encode_image(images, tap_block, value_value=self.hparams.patch_tokens == "value_value")

    def preprocess_config(self) -> dict[str, Any]:
        """What a datamodule needs to match this model: image size, normalisation, context."""
        size = self.backbone.clip.visual.image_size
        return {
            "image_size": size[0] if isinstance(size, tuple) else size,
            "mean": self.backbone.pixel_mean,  # the statistics uint8 batches are normalised with
            "std": self.backbone.pixel_std,
            "context_length": self.backbone.context_length,
        }

    def logit_scale(self) -> torch.Tensor:
        return self.backbone.logit_scale.exp().clamp(max=self.hparams.max_logit_scale)

    # ------------------------------------------------------------------ objectives
    def compute_losses(self, batch: dict[str, torch.Tensor]) -> Losses:
        """All MulCLIP terms for one batch (docs/METHOD.md §2, §4, §5, §6; chunked with encode_chunk, §8)."""
        hp, chunk = self.hparams, self.hparams.encode_chunk
        if chunk and torch.is_grad_enabled() and batch["image"].shape[0] > chunk:
            features = cached_features(self, batch, chunk)  # same gradients, one chunk's activations
        else:
            features = sample_features(self, batch)
        scale = self.logit_scale()
        plain = hp.identical_texts_as_negatives  # else identical texts are not negatives (METHOD.md §2)
        terms, weighted = {}, []
        for name, texts, weight in (("long", features.t_long, hp.long_weight), ("short", features.t_short, hp.short_weight)):
            if texts is not None:  # not encoded when its weight is 0 (sample_features)
                terms[f"global_{name}"] = infonce(features.v_cls, texts, scale, None if plain else text_keys(batch[name]))
                weighted.append(weight * terms[f"global_{name}"])
        terms["global"] = sum(weighted) if weighted else features.v_cls.new_zeros(())
        total = hp.lambda_global * terms["global"]
        if features.word_image is not None:  # WPR, computed within each sample (§4)
            word = features.word_image + features.word_text
            terms.update(word=word, word_image=features.word_image, word_text=features.word_text)
            total = total + self.word_weight() * word
        if features.vbar is not None:
            terms["sub"] = sap_contrast(features.vbar, features.t_sub, features.sub_mask, scale,
                                        None if plain else text_keys(batch["sub"]))
            total = total + hp.lambda_sub * terms["sub"]
        return Losses(total=total, terms=terms)

    def word_weight(self) -> float:
        """lambda_word, ramped linearly from 0 over ``word_warmup_steps`` (the step being trained counts)."""
        hp = self.hparams
        return hp.lambda_word * min(1.0, (self.global_step + 1) / hp.word_warmup_steps) if hp.word_warmup_steps else hp.lambda_word

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        self._bad_inputs.add(batch)  # replaced in the batch by good samples: counted, listed each epoch
        self._truncated += int(batch.get("n_truncated", 0))
        losses = self.compute_losses(batch)
        if self._nonfinite.should_skip(losses.total, self):  # on every rank together
            return self._nonfinite.skipped_step_output(losses.total, self)  # None, or a zero loss with several
        batch_size = batch["image"].shape[0]
        self.log("train/loss", losses.total, prog_bar=True, batch_size=batch_size)
        for name, value in losses.terms.items():
            self.log(f"train/{name}", value, batch_size=batch_size)
        self.log("train/logit_scale", self.logit_scale(), batch_size=batch_size)
        self.log("data/truncated_captions", float(batch.get("n_truncated", 0)), reduce_fx="sum", batch_size=batch_size)
        return losses.total

