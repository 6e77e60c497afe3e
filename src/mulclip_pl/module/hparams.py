"""MulCLIP's argument types (presets, calibration) and their checks before anything is built or read,
each error naming its flag."""

from __future__ import annotations

from typing import Any, Literal, get_args

from mulclip_pl.errors import HyperParameterError
from mulclip_pl.model.compiled import CompileMode
from mulclip_pl.tokenizer import CLIP_CONTEXT

Preset = Literal["full", "global_only", "no_wpr", "no_sap"]
PRESETS_WITH_WPR = ("full", "no_sap")  # presets whose loss includes lambda_word * L_word
PRESETS_WITH_SAP = ("full", "no_wpr")  # ... and lambda_sub * L_sub
Calibration = Literal["both", "image", "none"]  # which WPR inputs go through an LTC head
PatchTokens = Literal["clip", "value_value"]  # the patch tokens WPR, SAP and the maps read (model/value_attention.py)


def validate_hparams(hp: Any) -> None:
    """Fail before any data is read, in one line naming the offending argument and its value (not
    the whole hyper-parameter dict, 50 entries)."""
    checks = [
        (hp.context_length >= CLIP_CONTEXT or hp.context_length > hp.keep_positions, "model.context_length",
         ("context_length", "keep_positions"), "must exceed keep_positions"),
        (0 <= hp.keep_positions < CLIP_CONTEXT, "model.keep_positions", ("keep_positions",),
         f"must be in [0, {CLIP_CONTEXT})"),
        (hp.calibrated_tokens is None or hp.calibrated_tokens >= 1, "model.calibrated_tokens", ("calibrated_tokens",),
         "must be >= 1"),
        (min(hp.tau_r, hp.tau_w, hp.tau_s) > 0, "model.tau_r/tau_w/tau_s", ("tau_r", "tau_w", "tau_s"),
         "temperatures must be > 0"),
        (hp.sap_top_k_fraction is None or 0 < hp.sap_top_k_fraction <= 1, "model.sap_top_k_fraction",
         ("sap_top_k_fraction",), "must be in (0, 1]"),
        (min(hp.lambda_global, hp.lambda_word, hp.lambda_sub, hp.long_weight, hp.short_weight) >= 0, "model.lambda_*",
         ("lambda_global", "lambda_word", "lambda_sub", "long_weight", "short_weight"), "weights must be >= 0"),
        (hp.lr > 0 and hp.head_lr > 0, "model.lr/head_lr", ("lr", "head_lr"), "must be > 0"),
        (hp.word_warmup_steps >= 0, "model.word_warmup_steps", ("word_warmup_steps",), "must be >= 0"),
        (hp.max_nonfinite_steps >= 1, "model.max_nonfinite_steps", ("max_nonfinite_steps",), "must be >= 1"),
        (hp.encode_chunk is None or hp.encode_chunk >= 1, "model.encode_chunk", ("encode_chunk",),
         "must be >= 1 (null: the whole batch at once)"),
        (hp.calibration in ("both", "image", "none"), "model.calibration", ("calibration",),
         "must be 'both', 'image' or 'none'"),
        (hp.patch_tokens in get_args(PatchTokens), "model.patch_tokens", ("patch_tokens",),
         "must be 'clip' or 'value_value'"),
        (hp.position_scheme in ("longclip", "single"), "model.position_scheme", ("position_scheme",),
         "must be 'longclip' or 'single'"),
        (hp.compile_mode in get_args(CompileMode), "model.compile_mode", ("compile_mode",),
         f"must be one of {', '.join(get_args(CompileMode))}"),
        (not (hp.pretrained and hp.init_from), "model.init_from", ("init_from", "pretrained"),
         "replaces model.pretrained; set only one of them"),
    ]
    for ok, key, names, why in checks:
        if not ok:
            got = ", ".join(f"model.{name}={getattr(hp, name)!r}" for name in names)
            raise HyperParameterError(f"{key}: {why} (got {got})")
