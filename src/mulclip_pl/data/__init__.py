"""Data: corpus readers, text processing, datasets and LightningDataModules (``--data <Name>``)."""

from mulclip_pl.data.base import BaseDataModule
from mulclip_pl.data.corpus_modules import (
    COCO, DCI, DOCCI, CIFAR10, CIFAR100, Flickr30K, GenericCaptions, ImageFolder, ImageNet, ImageNetO, ImageNetV2,
    ShareGPT4V, Urban1K,
)
from mulclip_pl.data.eval_suite import EvalSuite
from mulclip_pl.data.fgovd_module import FGOVD
from mulclip_pl.data.prepared import HFCaptions, Prepared
from mulclip_pl.data.synthlong import SynthLong, SynthLongShifted

__all__ = [
    "BaseDataModule", "COCO", "CIFAR10", "CIFAR100", "DCI", "DOCCI", "EvalSuite", "FGOVD", "Flickr30K",
    "GenericCaptions", "HFCaptions", "ImageFolder", "ImageNet", "ImageNetO", "ImageNetV2", "Prepared", "ShareGPT4V",
    "SynthLong", "SynthLongShifted", "Urban1K",
]
