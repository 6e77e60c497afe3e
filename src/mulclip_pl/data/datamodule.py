"""LightningDataModules: one per corpus format, plus ``EvalSuite`` to test on several at once.

A datamodule reads records with its corpus reader, checks them (bad input raised or counted,
duplicates and train/eval overlap reported), and serves:
- training batches: image, ``long`` (B, L) tokens, ``short`` (B, L), ``sub`` (B, M, L), ``sub_mask`` (B, M);
- evaluation sets (``eval_sets(stage)``): retrieval or zero-shot classification.
Image size, normalisation and text context are taken from the LightningModule being trained
(``preprocess_config()``) so data always matches the model; without one, from the arguments.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import lightning as L
import open_clip
import torch
from torch.utils.data import DataLoader, Dataset

from mulclip_pl.data.corpora.classification import read_cifar, read_image_folder
from mulclip_pl.data.corpora.dci import LongCaptionRecipe, read_dci
from mulclip_pl.data.corpora.docci import read_docci
from mulclip_pl.data.corpora.generic import read_generic
from mulclip_pl.data.corpora.karpathy import read_karpathy
from mulclip_pl.data.corpora.sharegpt4v import read_sharegpt4v
from mulclip_pl.data.corpora.urban1k import read_urban1k
from mulclip_pl.data.datasets import CaptionEncoder, ClassificationDataset, PairDataset, RetrievalDataset, collate
from mulclip_pl.data.sampling import ResumableLoader
from mulclip_pl.data.records import (
    BadInputPolicy, DataError, LabeledImage, ProblemLog, Record, report_duplicates, report_overlap,
)
from mulclip_pl.data.synthlong import ensure_generated
from mulclip_pl.data.text import SentenceSelection, SentenceSplitter, SummarySource
from mulclip_pl.model.long_text import LONG_CONTEXT, LongTextTokenizer, OverflowPolicy

log = logging.getLogger(__name__)
Stage = Literal["train", "val", "test"]
_EVAL_SPLITS_FOR_STAGE = {"fit": ("val",), "validate": ("val",), "test": ("test",), None: ("val", "test")}


@dataclass
class EvalSet:
    name: str
    kind: Literal["retrieval", "classification"]
    dataset: Dataset
    class_names: list[str] = field(default_factory=list)


class BaseDataModule(L.LightningDataModule):
    """Transforms, tokenizer, loaders and bad-input policy shared by every corpus.

    Args:
        batch_size: training batch per device; eval_batch_size: evaluation batch (default: same).
        num_workers: loader worker processes.
        image_size: input resolution; None = the model's.
        train_augment: open_clip's train transform (random resized crop) instead of the eval one.
        context_length: text tokens; None = the model's (248 after the stretch).
        overflow: over-long captions are 'truncate'd (counted, logged) or raise ('error').
        max_sentences: M, the cap on subcaptions per caption.
        sentence_selection: 'random' (training) or 'first'; evaluation always uses 'first'.
        summary_source: 'dataset' (its own short caption where it has one, else sentence 1) or
            'first_sentence'.
        bad_input: 'error' or 'skip'; None = skip for training, error for evaluation.
        spacy_model: installed spaCy pipeline name; None = offline rule-based sentencizer.
        check_files: verify at setup that every image file exists (fast fail before training).
        name: label of this data set in metrics and tables.
        seed: shuffling and subcaption-sampling seed (the order is a function of seed and epoch).
    """

    default_name = "data"

    def __init__(
        self,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        image_size: int | None = None,
        train_augment: bool = True,
        context_length: int | None = None,
        overflow: OverflowPolicy = "truncate",
        max_sentences: int = 10,
        sentence_selection: SentenceSelection = "random",
        summary_source: SummarySource = "dataset",
        bad_input: BadInputPolicy | None = None,
        spacy_model: str | None = None,
        check_files: bool = True,
        name: str | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if max_sentences < 1:
            raise ValueError(f"data.max_sentences must be >= 1 (got {max_sentences})")
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1 (got {batch_size})")
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.image_size, self.train_augment = num_workers, image_size, train_augment
        self.context_length, self.overflow = context_length, overflow
        self.max_sentences, self.sentence_selection, self.summary_source = max_sentences, sentence_selection, summary_source
        self.bad_input, self.spacy_model, self.check_files = bad_input, spacy_model, check_files
        self.name = name or self.default_name
        self.seed = seed
        self.train_set: Dataset | None = None
        self._eval_sets: dict[str, list[EvalSet]] = {}
        self.problems: list[ProblemLog] = []

    # ---- to implement per corpus
    def read_records(self, split: Stage, problems: ProblemLog) -> list[Record]:
        raise DataError(f"{type(self).__name__} has no {split!r} split")

    def available_splits(self) -> tuple[Stage, ...]:
        return ("train", "val", "test")

    # ---- shared machinery
    def _policy(self, stage: Stage) -> BadInputPolicy:
        return self.bad_input or ("skip" if stage == "train" else "error")

    def _config(self) -> dict:
        """The model's preprocessing when a trainer with a MulCLIP module is attached."""
        trainer = getattr(self, "trainer", None)
        module = trainer.lightning_module if trainer is not None else None
        model_cfg = module.preprocess_config() if hasattr(module, "preprocess_config") else {}
        return {
            "image_size": self.image_size or model_cfg.get("image_size") or 224,
            "mean": model_cfg.get("mean") or open_clip.OPENAI_DATASET_MEAN,
            "std": model_cfg.get("std") or open_clip.OPENAI_DATASET_STD,
            "context_length": self.context_length or model_cfg.get("context_length") or LONG_CONTEXT,
        }

    def transform(self, train: bool):
        cfg = self._config()
        return open_clip.image_transform(cfg["image_size"], is_train=train and self.train_augment, mean=cfg["mean"], std=cfg["std"])

    def tokenizer(self) -> LongTextTokenizer:
        return LongTextTokenizer(self._config()["context_length"], self.overflow)

    def load(self, split: Stage, stage: Stage) -> list[Record]:
        """Records of ``split`` with problems raised or counted under ``stage``'s policy."""
        problems = ProblemLog(self._policy(stage), where=f"{self.name}/{split}")
        records = self.read_records(split, problems)
        if self.check_files:
            for record in records:
                if not Path(record.image).is_file():
                    problems.report(record.id, f"missing image: {record.image}")
            missing = {item for item, reason in problems.problems if reason.startswith("missing image")}
            records = [r for r in records if r.id not in missing]
        if not records:
            raise DataError(f"{self.name}/{split}: no usable records (check data.root and the split name)")
        report_duplicates(records, f"{self.name}/{split}")
        problems.log_summary()
        self.problems.append(problems)
        return records

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", None) and "train" in self.available_splits():
            train = self.load("train", "train")
            text = CaptionEncoder(self.tokenizer(), SentenceSplitter(self.spacy_model), self.max_sentences,
                                  self.sentence_selection, self.summary_source)
            self.train_set = PairDataset(train, self.transform(train=True), text, self._policy("train"), self.seed)
            log.info("%s: %d training pairs", self.name, len(train))
        for split in _EVAL_SPLITS_FOR_STAGE.get(stage, ()):
            self._eval_sets[split] = self.build_eval_sets(split)
        if self.train_set is not None and self._eval_sets.get("val"):
            for eval_set in self._eval_sets["val"]:
                if isinstance(eval_set.dataset, RetrievalDataset):
                    report_overlap(self.train_set.records, eval_set.dataset.records, self.name)

    def build_eval_sets(self, split: Stage) -> list[EvalSet]:
        if split not in self.available_splits():
            return []
        records = self.load(split, split)
        dataset = RetrievalDataset(records, self.transform(train=False), self.tokenizer(), self._policy(split))
        return [EvalSet(self.name, "retrieval", dataset)]

    def eval_sets(self, stage: str) -> list[EvalSet]:
        return self._eval_sets.get(stage, [])

    def train_dataloader(self) -> DataLoader:
        if self.train_set is None:
            raise DataError(f"{self.name} has no training split")
        trainer = self.trainer
        return ResumableLoader(
            self.train_set, self.batch_size, progress=self._train_progress, seed=self.seed,
            num_replicas=trainer.world_size if trainer else 1, rank=trainer.global_rank if trainer else 0,
            num_workers=self.num_workers, collate_fn=collate, persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def _train_progress(self) -> tuple[int, int]:
        """(epoch, batches processed in it), what a checkpoint must remember of the data position."""
        if self.trainer is None:
            return 0, 0
        return self.trainer.current_epoch, self.trainer.fit_loop.epoch_loop.batch_progress.current.processed

    def _eval_loaders(self, stage: str) -> list[DataLoader]:
        return [DataLoader(s.dataset, batch_size=self.eval_batch_size, num_workers=self.num_workers, collate_fn=collate)
                for s in self.eval_sets(stage)]

    def val_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders("val")

    def test_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders("test")

    def predict_dataloader(self) -> list[DataLoader]:
        """Embeds the test split (``mulclip-pl predict`` writes the embeddings)."""
        if "test" not in self._eval_sets:
            self._eval_sets["test"] = self.build_eval_sets("test")
        return self._eval_loaders("test")


def _hash_fraction(key: str) -> float:
    """Deterministic position of a record in [0, 1), for held-out slices that never move."""
    return int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) / 2**32


class HeldOutValMixin:
    """Corpora without a validation split hold out a fixed fraction of train (by id hash)."""

    val_fraction: float

    def _split_train(self, records: list[Record], split: Stage) -> list[Record]:
        keep_val = split == "val"
        return [r for r in records if (_hash_fraction(r.id) < self.val_fraction) == keep_val]


class GenericCaptions(BaseDataModule):
    """Users' own jsonl/csv files (image, caption, optional summary, id); one file per split."""

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


class SynthLong(GenericCaptions):
    """The procedural demo set (``mulclip_pl.data.synthlong``), generated on first use into ``root``."""

    default_name = "synthlong"

    def __init__(self, root: str = "data/synthlong", image_px: int = 64, generation_seed: int = 0, **kwargs) -> None:
        root_path = Path(root)
        super().__init__(train_file=str(root_path / "train.jsonl"), val_file=str(root_path / "val.jsonl"),
                         test_file=str(root_path / "test.jsonl"), **kwargs)
        self.root, self.image_px, self.generation_seed = root_path, image_px, generation_seed

    def prepare_data(self) -> None:
        ensure_generated(self.root, self.image_px, self.generation_seed)

    def setup(self, stage: str | None = None) -> None:
        ensure_generated(self.root, self.image_px, self.generation_seed)  # also when used outside a Trainer
        super().setup(stage)


class DOCCI(HeldOutValMixin, BaseDataModule):
    """DOCCI: train (9,647; ``val_fraction`` held out for validation) and test (5,000)."""

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
    """Urban1K long-caption retrieval (1,000 pairs, evaluation only)."""

    default_name = "urban1k"

    def __init__(self, root: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.root = root

    def available_splits(self):
        return ("test",)

    def read_records(self, split, problems):
        return read_urban1k(self.root, split, problems)


class DCI(BaseDataModule):
    """DCI long-caption retrieval; ``long_caption`` picks the documented caption recipe."""

    default_name = "dci"

    def __init__(self, root: str, long_caption: LongCaptionRecipe = "short_extra", **kwargs) -> None:
        super().__init__(**kwargs)
        self.root, self.long_caption = root, long_caption

    def available_splits(self):
        return ("train", "val", "test") if (Path(self.root) / "splits.json").is_file() else ("test",)

    def read_records(self, split, problems):
        return read_dci(self.root, split, problems, self.long_caption)


class ShareGPT4V(BaseDataModule):
    """ShareGPT4V json: a training slice and a disjoint evaluation slice (ShareGPT4V-1k by default)."""

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
    """COCO / Flickr30K Karpathy test: ~5 captions per image."""

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
    """ImageNet-style folders (ImageNet-V2, ImageNet-O, ...): ``ROOT/<class>/<image>``."""

    default_name = "imagefolder"

    def __init__(self, root: str, class_names_file: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.root, self.class_names_file = root, class_names_file

    def read_items(self):
        return read_image_folder(self.root, self.class_names_file)


class EvalSuite(L.LightningDataModule):
    """Evaluate on several data sets in one ``mulclip-pl test`` call."""

    def __init__(self, datasets: list[BaseDataModule]) -> None:
        super().__init__()
        if not datasets:
            raise ValueError("data.datasets must list at least one data set")
        names = [d.name for d in datasets]
        if len(set(names)) != len(names):
            raise ValueError(f"data.datasets have repeated names {names}; give each a distinct 'name'")
        self.datasets = datasets

    def setup(self, stage: str | None = None) -> None:
        for dm in self.datasets:
            dm.trainer = self.trainer
            dm.setup(stage)

    def eval_sets(self, stage: str) -> list[EvalSet]:
        return [s for dm in self.datasets for s in dm.eval_sets(stage)]

    def val_dataloader(self):
        return [loader for dm in self.datasets for loader in dm.val_dataloader()]

    def test_dataloader(self):
        return [loader for dm in self.datasets for loader in dm.test_dataloader()]
