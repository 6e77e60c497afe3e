"""``mulclip-pl export``: a trained model in every format it is used in outside mulclip-pl, with a model card.

- ``command``: ``export`` (the subcommand: reads the checkpoint, picks the format, writes the card);
- ``open_clip_dir``: a ``local-dir:`` folder for open_clip (and its ``open_clip_config.json``);
- ``hf``: a transformers ``CLIPModel`` folder; ``onnx``: the two towers as ONNX graphs (+ ``OnnxTextEncoder``);
- ``longclip``: a weights file for Long-CLIP's ``longclip.load``;
- ``model_card``: the README every export writes.

On top of ``mulclip_pl.module`` (``MulCLIP.load_trained``) and ``model.plain`` (the plain open_clip model).
"""

from mulclip_pl.export.command import export

__all__ = ["export"]
