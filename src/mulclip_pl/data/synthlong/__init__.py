"""SynthLong, the procedural long-caption data set the demo trains and tests on (docs/EXPERIMENTS.md).

- ``scenes``: objects on a grid, how a domain words and draws them (``ORIGINAL``);
- ``negatives``: hard negatives, one attribute changed, by kind;
- ``shifted``: the cross-domain test set's words, sentence order and look (``SHIFTED``);
- ``generator``: writes a split as generic jsonl + PNGs; ``SynthLong`` / ``SynthLongShifted`` read it;
- ``web``: stage 1's short alt-text captions over both domains (``SynthLongWeb``).

The datamodules are exported here and by ``mulclip_pl.data`` (``class_path: mulclip_pl.data.SynthLongWeb``).
"""

from mulclip_pl.data.synthlong.generator import SynthLong, SynthLongShifted
from mulclip_pl.data.synthlong.web import SynthLongWeb

__all__ = ["SynthLong", "SynthLongShifted", "SynthLongWeb"]
