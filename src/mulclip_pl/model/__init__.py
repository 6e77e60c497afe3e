"""The CLIP itself: building it with Long-CLIP's stretched positions, and its parts (docs/METHOD.md §1-§3).

- ``build``: ``build_clip`` (an open_clip CLIP at 248 positions, from weights or random; registers the bundled
  ``mulclip-tiny`` / ``mulclip-test`` configs in ``configs/``);
- ``long_text``: the positional stretch and the two position layouts (``LongPositionsCLIP``);
- ``plain``: the same CLIP as plain open_clip holds it (what ``mulclip_pl.load`` and the exports give);
- ``backbone``: the two towers with their local tokens; ``calibration``: the LTC heads;
  ``sentence_features``: sentence embeddings pooled from the long caption's tokens;
- ``compiled``: torch.compile of the towers' blocks in place (``--model.compile``).

Reads weights through ``mulclip_pl.weights``; knows nothing of training, data or evaluation.
"""
