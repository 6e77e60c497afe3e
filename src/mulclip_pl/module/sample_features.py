"""Per-sample features of a batch (or of one chunk of it): all that MulCLIP's batch-level terms consume.

The global InfoNCE (docs/METHOD.md §2) and SAP's contrast (§5) compare samples with each other,
but only through the per-sample tensors of ``SampleFeatures``; WPR (§4) and SAP's pooling never
leave a sample. ``MulCLIP.compute_losses`` is split at this seam, so that a batch can also be
encoded chunk by chunk (``chunked_step.py``) and still get the gradients of the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightning as L
import torch
import torch.nn.functional as F

from mulclip_pl.model.sentence_features import span_sentence_features
from mulclip_pl.objectives.precision import fp32
from mulclip_pl.objectives.sap import patch_weights, region_embeddings
from mulclip_pl.objectives.wpr import word_patch_reconstruction_loss


# The fields that carry gradient back into the towers and heads, in a fixed order.
DIFFERENTIABLE = ("v_cls", "t_long", "t_short", "t_sub", "vbar", "word_image", "word_text")


@dataclass
class SampleFeatures:
    v_cls: torch.Tensor  # (n, d) normalised image embeddings
    t_long: torch.Tensor | None = None  # (n, d) normalised long-caption embeddings (None: long_weight 0, not encoded)
    t_short: torch.Tensor | None = None  # (n, d) normalised summary embeddings (None: short_weight 0, not encoded)
    t_sub: torch.Tensor | None = None  # (n, M, d) normalised sentence embeddings (SAP only)
    vbar: torch.Tensor | None = None  # (n, M, d) SAP's region embeddings, fp32
    sub_mask: torch.Tensor | None = None  # (n, M) True where sentence i exists (SAP only)
    word_image: torch.Tensor | None = None  # WPR's L_recon,image: mean over these samples' tokens
    word_text: torch.Tensor | None = None  # WPR's L_recon,text: mean over these samples' tokens
    word_rows: tuple[int, torch.Tensor | int] | None = None  # tokens each WPR mean is over (weights chunks)


def sample_features(model: L.LightningModule, batch: dict[str, torch.Tensor]) -> SampleFeatures:
    """Encode ``batch`` and compute everything that stays within a sample (docs/METHOD.md §2, §4, §5)."""
    hp = model.hparams
    image = model.encode_patches(batch["image"], tap_block=model._wpr_tap_block)
    v_cls = F.normalize(image.v_cls, dim=-1)
    v_loc = F.normalize(image.v_loc, dim=-1)
    span = model.use_sap and hp.sentence_features == "span"
    # A text pass whose loss weight is 0 and that no local term reads is skipped: stage 1's alt text is both
    # its long and its short caption, and the zero-weighted pass cost a third of a step for a zero gradient.
    long = None
    if hp.long_weight > 0 or model.use_wpr or span:
        long = model.backbone.encode_text(batch["long"], with_tokens=model.use_wpr or span)
    t_long = F.normalize(long.t_eot, dim=-1) if hp.long_weight > 0 else None
    if span:  # sentences pooled from the long caption's tokens: no extra text pass
        t_short = model.encode_text(batch["short"]) if hp.short_weight > 0 else None
        t_sub, sub_mask = span_sentence_features(long.t_tokens, batch["sub_span"], batch["sub_mask"])
    else:
        (t_short, t_sub), sub_mask = encode_short_and_sentences(model, batch, hp.short_weight > 0), batch["sub_mask"]
    features = SampleFeatures(v_cls=v_cls, t_long=t_long, t_short=t_short)
    if model.use_wpr:
        words, t_mask = F.normalize(long.t_tokens, dim=-1), long.word_mask
        patches = v_loc if image.v_tap is None else F.normalize(image.v_tap, dim=-1)
        v_cal = patches if model.image_calibration is None else model.image_calibration(patches)
        if model.text_calibration is not None:
            words, t_mask = model.text_calibration(words, t_mask), None
        wpr = word_patch_reconstruction_loss(v_cal, words, hp.tau_r, hp.tau_w, t_mask)
        # Raw words are averaged over valid tokens (a row without any counts whole, as wpr._usable).
        text_rows = words.shape[0] * words.shape[1] if t_mask is None else (t_mask | ~t_mask.any(1, keepdim=True)).sum()
        features.word_image, features.word_text = wpr.image, wpr.text
        features.word_rows = (v_cal.shape[0] * v_cal.shape[1], text_rows)
    if model.use_sap:
        with fp32(v_loc):
            features.vbar = region_embeddings(patch_weights(t_sub, v_loc, hp.tau_s, model.sap_top_k), v_loc)
        features.t_sub, features.sub_mask = t_sub, sub_mask
    return features


def encode_short_and_sentences(model: L.LightningModule, batch: dict[str, torch.Tensor],
                               with_short: bool = True) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """One text pass for the summaries and the *present* sentences: (B, d), (B, M, d) (None without SAP).
    ``with_short`` False: no summaries (their loss weight is 0), None in their place."""
    short, subs, sub_mask = batch["short"], batch["sub"], batch["sub_mask"]
    if not model.use_sap:
        return (model.encode_text(short) if with_short else None), None
    if not with_short:
        short = short[:0]  # the sentences alone go through the tower
    width = max(short.shape[1], subs.shape[2])
    texts = torch.cat([F.pad(short, (0, width - short.shape[1])), F.pad(subs[sub_mask], (0, width - subs.shape[2]))])
    encoded = model.encode_text(texts)
    t_short = encoded[: short.shape[0]] if with_short else None
    t_sub = encoded.new_zeros(*sub_mask.shape, encoded.shape[-1])
    t_sub[sub_mask] = encoded[short.shape[0]:]
    return t_short, t_sub
