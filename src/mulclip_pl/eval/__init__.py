"""Evaluating a trained model from outside ``fit``: ``LongCLIPScore`` (CLIPScore with 248-token captions,
for a ``MulCLIP``, a checkpoint path or an open_clip model), ``report`` (results tables, ``mulclip-pl
report``) and ``predict`` (``mulclip-pl predict``'s embeddings table).

On top of ``mulclip_pl.module``; the measures the module's own steps compute are ``mulclip_pl.metrics``.
"""

from mulclip_pl.eval.clip_score import LongCLIPScore

__all__ = ["LongCLIPScore"]
