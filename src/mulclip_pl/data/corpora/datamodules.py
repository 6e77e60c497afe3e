"""One LightningDataModule per supported corpus: each only says where its records come from.

Everything else (transforms, tokenisation, loaders, bad-input policy) is ``BaseDataModule``'s.
"""

from __future__ import annotations

from pathlib import Path

from mulclip_pl.data.base import BaseDataModule, EvalSet, HeldOutValMixin
from mulclip_pl.data.corpora.classification import read_cifar, read_image_folder, read_imagenet
from mulclip_pl.data.corpora.dci import LongCaptionRecipe, read_dci
from mulclip_pl.data.corpora.docci import read_docci
from mulclip_pl.data.corpora.generic import read_generic
from mulclip_pl.data.corpora.karpathy import read_karpathy
from mulclip_pl.data.corpora.sharegpt4v import read_sharegpt4v
from mulclip_pl.data.corpora.urban1k import read_urban1k
from mulclip_pl.data.datasets import ClassificationDataset
from mulclip_pl.data.records import LabeledImage, ProblemLog, report_overlap


class GenericCaptions(BaseDataModule):
    """Users' own jsonl/csv files (image, caption, optional summary, id, negative); one file per split.

    Args:
        train_file: training captions (.jsonl or .csv); None = no training split.
        val_file: validation captions; None = no validation.
        test_file: test captions; None = no test split.
        image_root: folder the image paths are relative to; None = each file's own folder.
    """

    default_name = "generic"

    def __init__(self, train_file: str | None = None, val_file: str | None = None, test_file: str | None = None,
                 image_root: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.files = {"train": train_file, "val": val_file, "test": test_file}
        self.image_root = image_root

    def available_splits(self):
        return tuple(s for s, f in self.files.items() if f)

    def read_records(self, split, problems):
        return read_generic(self.files[split], problems, self.image_root)


class DOCCI(HeldOutValMixin, BaseDataModule):
    """DOCCI: train (9,647; ``val_fraction`` held out for validation) and test (5,000).

    Args:
        root: folder with docci_descriptions.jsonlines and images/.
        val_fraction: share of train held out for validation, fixed by id hash; 0 = none.
    """

    default_name = "docci"

    def __init__(self, root: str, val_fraction: float = 0.02, **kwargs) -> None:
        super().__init__(**kwargs)
        self.root, self.val_fraction = root, val_fraction

    def available_splits(self):
        return ("train", "val", "test") if self.val_fraction > 0 else ("train", "test")

    def read_records(self, split, problems):
        if split == "test":
            return read_docci(self.root, "test", problems)
        return self._split_train(read_docci(self.root, "train", problems), split)


class Urban1K(BaseDataModule):
    """Urban1K long-caption retrieval (1,000 pairs, evaluation only).

    Args:
        root: folder with image/ and caption/.
    """

    default_name = "urban1k"

    def __init__(self, root: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.root = root

    def available_splits(self):
        return ("test",)

    def read_records(self, split, problems):
        return read_urban1k(self.root, split, problems)


class DCI(BaseDataModule):
    """DCI long-caption retrieval.

    Args:
        root: folder with annotations/ and photos/ (and splits.json for train/val).
        long_caption: how the long caption is built from DCI's annotations (see corpora/dci.py).
    """

    default_name = "dci"

    def __init__(self, root: str, long_caption: LongCaptionRecipe = "short_extra", **kwargs) -> None:
        super().__init__(**kwargs)
        self.root, self.long_caption = root, long_caption

    def available_splits(self):
        return ("train", "val", "test") if (Path(self.root) / "splits.json").is_file() else ("test",)

    def read_records(self, split, problems):
        return read_dci(self.root, split, problems, self.long_caption)


class ShareGPT4V(BaseDataModule):
    """ShareGPT4V json: a training slice and a disjoint evaluation slice (ShareGPT4V-1k by default).

    Args:
        json_file: the Long-CLIP / ShareGPT4V caption json.
        image_root: folder the json's image paths are relative to.
        train_slice: Python slice of the json's entries used for training ("start:stop").
        eval_slice: slice used for evaluation; an overlap with train_slice is reported.
    """

    default_name = "sharegpt4v"

    def __init__(self, json_file: str, image_root: str, train_slice: str = "1000:", eval_slice: str = "0:1000",
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.json_file, self.image_root = json_file, image_root
        self.slices = {"train": train_slice, "val": eval_slice, "test": eval_slice}

    def available_splits(self):
        return ("train", "test")

    def read_records(self, split, problems):
        records = read_sharegpt4v(self.json_file, self.image_root, self.slices[split], problems)
        if split != "train" and self.slices["train"]:
            train = read_sharegpt4v(self.json_file, self.image_root, self.slices["train"], ProblemLog("skip"))
            report_overlap(train, records, f"{self.name} (train slice {self.slices['train']} vs eval slice {self.slices[split]})")
        return records


class _Karpathy(BaseDataModule):
    """COCO / Flickr30K Karpathy test: ~5 captions per image.

    Args:
        root: folder with the Karpathy json and the images.
        json_file: the Karpathy json; None = ROOT/dataset_{coco,flickr30k}.json.
        image_root: folder of the images; None = root.
    """

    json_name = ""

    def __init__(self, root: str, json_file: str | None = None, image_root: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.json_file = json_file or str(Path(root) / self.json_name)
        self.image_root = image_root or root

    def read_records(self, split, problems):
        return read_karpathy(self.json_file, self.image_root, split, problems)


class COCO(_Karpathy):
    default_name, json_name = "coco", "dataset_coco.json"


class Flickr30K(_Karpathy):
    default_name, json_name = "flickr30k", "dataset_flickr30k.json"


class _Classification(BaseDataModule):
    """Zero-shot classification sets (evaluation only)."""

    def available_splits(self):
        return ("test",)

    def read_items(self) -> tuple[list[LabeledImage], list[str]]:
        raise NotImplementedError

    def build_eval_sets(self, split):
        items, class_names = self.read_items()
        dataset = ClassificationDataset(items, self.transform(train=False), self._policy(split))
        return [EvalSet(self.name, "classification", dataset, class_names)]


class CIFAR10(_Classification):
    """CIFAR-10 test set, zero-shot.

    Args:
        root: the python pickle release: cifar-10-batches-py/ (cifar-100-python/ for CIFAR100) or its parent.
    """

    default_name = "cifar10"

    def __init__(self, root: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.root = root

    def read_items(self):
        return read_cifar(self.root, 10)


class CIFAR100(CIFAR10):
    default_name = "cifar100"

    def read_items(self):
        return read_cifar(self.root, 100)


class ImageFolder(_Classification):
    """Any ``ROOT/<class>/<image>`` folders, classes in sorted folder order (ImageNet sets: see ImageNet*).

    Args:
        root: the folder of class folders.
        class_names_file: JSON {folder name: readable class name}; None = folder names.
    """

    default_name = "imagefolder"

    def __init__(self, root: str, class_names_file: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.root, self.class_names_file = root, class_names_file

    def read_items(self):
        return read_image_folder(self.root, self.class_names_file)


class ImageNet(_Classification):
    """ImageNet-1k validation (50,000 images) in wnid folders ``ROOT/n01440764/*.JPEG``; 1000 classes.

    Args:
        root: the folder holding the class folders (wnids; ImageNet-V2: 0..999).
    """

    default_name, layout, subset, classes = "imagenet", "wnid", False, 1000  # classes: folders of a full copy

    def __init__(self, root: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.root = root

    def read_items(self):
        return read_imagenet(self.root, self.layout, type(self).__name__, self.subset, self.classes)


class ImageNetV2(ImageNet):
    """ImageNet-V2 (matched-frequency, 10,000 images): folders ``ROOT/0`` ... ``ROOT/999`` by class index."""

    default_name, layout = "imagenet_v2", "index"


class ImageNetO(ImageNet):
    """ImageNet-O (2,000 images): 200 wnid folders, scored over those 200 classes only."""

    default_name, subset, classes = "imagenet_o", True, 200
