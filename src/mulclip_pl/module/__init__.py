"""The MulCLIP LightningModule and what is its own.

- ``mulclip``: ``MulCLIP`` (backbone, calibration heads, ``compute_losses``, ``load_trained``);
- ``sample_features``: a batch's per-sample features, the seam every batch-level loss consumes;
- ``chunked_step``: gradient caching over chunks of a batch (``--model.encode_chunk``);
- ``hparams``: the presets and the checks of its arguments;
- ``training_hooks`` / ``eval_steps``: its Lightning hooks for fit and for validate / test / predict;
- ``resume_check``: whether a checkpoint can resume a fit, refused in one line before it loads;
- ``wise_ft``: ``mulclip-pl wise-ft``, a fine-tuned model's towers averaged with its start's.

Built on ``model`` (the CLIP), ``objectives`` (the losses), ``metrics`` (evaluation), ``training`` (run
bookkeeping) and ``weights``; the exports, maps, metrics and CLI on top use it.
"""

from mulclip_pl.module.mulclip import MulCLIP

__all__ = ["MulCLIP"]
