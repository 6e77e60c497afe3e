"""Evaluation: retrieval recall, zero-shot accuracy, hard negatives, reports, and ``LongCLIPScore``."""

from mulclip_pl.eval.clip_score import LongCLIPScore

__all__ = ["LongCLIPScore"]
