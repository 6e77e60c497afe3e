"""Data: corpus readers, text processing, datasets and LightningDataModules (``--data <Name>``)."""

from mulclip_pl.data.base import BaseDataModule
from mulclip_pl.data.corpus_modules import (
    COCO, DCI, DOCCI, CIFAR10, CIFAR100, Flickr30K, GenericCaptions, ImageFolder, ShareGPT4V, Urban1K,
)
from mulclip_pl.data.eval_suite import EvalSuite
from mulclip_pl.data.prepared import HFCaptions, Prepared
from mulclip_pl.data.synthlong import SynthLong

__all__ = [
    "BaseDataModule", "COCO", "CIFAR10", "CIFAR100", "DCI", "DOCCI", "EvalSuite", "Flickr30K", "GenericCaptions",
    "HFCaptions", "ImageFolder", "Prepared", "ShareGPT4V", "SynthLong", "Urban1K",
]
