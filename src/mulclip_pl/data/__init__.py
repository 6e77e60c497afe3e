"""Data: corpus readers, text processing, datasets and LightningDataModules (``--data <Name>``).

Core (this folder): ``records`` (what readers return, bad-input bookkeeping), ``text`` and
``caption_tokens`` (sentences, summaries, token ids), ``images``, ``datasets`` (items and batches),
``sampling`` (resumable order), ``base`` (``BaseDataModule``), ``eval_suite``, ``shrink``
(``mulclip-pl shrink-images``). On top of it: ``corpora/`` (one reader and datamodule per corpus),
``synthlong/`` (the procedural data set) and ``prepared/`` (pre-tokenised shards, ``mulclip-pl
prepare``). Below it only ``mulclip_pl.tokenizer``, ``errors`` and ``weights.safe_pickle``.

Every datamodule a config names is exported here (``class_path: mulclip_pl.data.<Name>``).
"""

from mulclip_pl.data.base import BaseDataModule
from mulclip_pl.data.corpora.datamodules import (
    COCO, DCI, DOCCI, CIFAR10, CIFAR100, Flickr30K, GenericCaptions, ImageFolder, ImageNet, ImageNetO, ImageNetV2,
    ShareGPT4V, Urban1K,
)
from mulclip_pl.data.corpora.fgovd_datamodule import FGOVD
from mulclip_pl.data.eval_suite import EvalSuite
from mulclip_pl.data.prepared import HFCaptions, Prepared
from mulclip_pl.data.synthlong import SynthLong, SynthLongShifted, SynthLongWeb

__all__ = [
    "BaseDataModule", "COCO", "CIFAR10", "CIFAR100", "DCI", "DOCCI", "EvalSuite", "FGOVD", "Flickr30K",
    "GenericCaptions", "HFCaptions", "ImageFolder", "ImageNet", "ImageNetO", "ImageNetV2", "Prepared", "ShareGPT4V",
    "SynthLong", "SynthLongShifted", "SynthLongWeb", "Urban1K",
]
