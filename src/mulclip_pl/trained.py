"""A trained MulCLIP back from a ``mulclip-pl fit`` checkpoint, for export, maps and notebooks."""

from __future__ import annotations

from pathlib import Path

from mulclip_pl.errors import PretrainedWeightsError
from mulclip_pl.module import MulCLIP
from mulclip_pl.weights.checkpoints import read_lightning_checkpoint


def load_trained(ckpt: str | Path, trust_pickle: bool = False) -> MulCLIP:
    """The module saved in ``ckpt``, in eval mode, on the CPU.

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
    module = MulCLIP(**{**arguments, "pretrained": None, "init_from": None, "trust_pickle": False})
    module.load_state_dict(state)
    return module.eval()
