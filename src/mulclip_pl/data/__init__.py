"""Data: corpus readers, text processing, datasets and LightningDataModules."""

from mulclip_pl.data.datamodule import (
    COCO, DCI, DOCCI, CIFAR10, CIFAR100, BaseDataModule, EvalSuite, Flickr30K, GenericCaptions, ImageFolder,
    ShareGPT4V, SynthLong, Urban1K,
)

__all__ = [
    "BaseDataModule", "COCO", "CIFAR10", "CIFAR100", "DCI", "DOCCI", "EvalSuite", "Flickr30K", "GenericCaptions",
    "ImageFolder", "ShareGPT4V", "SynthLong", "Urban1K",
]
