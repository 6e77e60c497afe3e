"""The machinery every corpus datamodule shares: transforms, tokenizer, loaders, bad-input policy.

A datamodule reads records with its corpus reader, checks them (bad input raised or counted,
duplicates and train/eval overlap reported), and serves:
- training batches: image, ``long`` (B, L) tokens, ``short`` (B, L), ``sub`` (B, M, L), ``sub_mask`` (B, M);
- evaluation sets (``eval_sets(stage)``): retrieval (with hard negatives where records carry
  them) or zero-shot classification.
Image size, normalisation and text context are taken from the LightningModule being trained
(``preprocess_config()``) so data always matches the model; without one, from the arguments.
Per-corpus subclasses live in ``corpora/datamodules.py``; they only say how to read records.
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

from mulclip_pl.data.datasets import CaptionEncoder, PairDataset, RetrievalDataset, collate, uint8_pixels
from mulclip_pl.data.records import BadInputPolicy, ProblemLog, Record, report_duplicates, report_overlap
from mulclip_pl.data.sampling import ResumableLoader
from mulclip_pl.data.text import SentenceSelection, SentenceSplitter, SummarySource
from mulclip_pl.errors import DataError
from mulclip_pl.tokenizer import LONG_CONTEXT, LongTextTokenizer, OverflowPolicy

log = logging.getLogger(__name__)
Stage = Literal["train", "val", "test"]
_EVAL_SPLITS_FOR_STAGE = {"fit": ("val",), "validate": ("val",), "test": ("test",), None: ("val", "test")}


@dataclass
class EvalSet:
    name: str
    kind: Literal["retrieval", "classification"]
    dataset: Dataset
    class_names: list[str] = field(default_factory=list)
    hard_negatives: bool = False  # retrieval items carry ``negatives``: hard-negative accuracy is scored
    recall: bool = True  # retrieval sets: also score R@K (off for extra views of one set's images)


class BaseDataModule(L.LightningDataModule):
    """Transforms, tokenizer, loaders and bad-input policy shared by every corpus.

    Args:
        batch_size: training batch per device.
        eval_batch_size: evaluation batch per device; None = batch_size.
        num_workers: loader worker processes.
        image_size: input resolution; None = the model's.
        train_augment: open_clip's train transform (random resized crop) instead of the eval one.
        uint8_batches: training images leave the loader as uint8 pixels, normalised by the model on
            its device (a quarter of the bytes to move between processes and to the GPU). False:
            normalised floats, for a LightningModule of your own that expects them.
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
        uint8_batches: bool = True,
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
        self.uint8_batches = uint8_batches
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
        transform = open_clip.image_transform(cfg["image_size"], is_train=train and self.train_augment,
                                              mean=cfg["mean"], std=cfg["std"])
        return uint8_pixels(transform) if train and self.uint8_batches else transform

    def tokenizer(self, warn: bool = True) -> LongTextTokenizer:
        return LongTextTokenizer(self._config()["context_length"], self.overflow, warn)

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
            text = CaptionEncoder(self.tokenizer(warn=False), SentenceSplitter(self.spacy_model), self.max_sentences,
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
        tokenizer = self.tokenizer(warn=False)  # loader workers would each warn: counted once here instead
        self.report_long_captions(records, tokenizer, split)
        dataset = RetrievalDataset(records, self.transform(train=False), tokenizer, self._policy(split))
        return [EvalSet(self.name, "retrieval", dataset, hard_negatives=dataset.has_negatives)]

    def report_long_captions(self, records: list[Record], tokenizer: LongTextTokenizer, split: str) -> int:
        """Log, once per split, how many captions the model's context cuts (a 77-token model loses
        the later sentences of long captions: that is what its scores then measure)."""
        texts = [caption for record in records for caption in record.captions]
        cut = sum(tokenizer.count_tokens(text) > tokenizer.context_length for text in texts)
        if cut:
            log.warning("%s/%s: %d of %d captions are longer than the model's %d tokens and are cut "
                        "(data.overflow=error refuses them)", self.name, split, cut, len(texts), tokenizer.context_length)
        return cut

    def eval_sets(self, stage: str) -> list[EvalSet]:
        return self._eval_sets.get(stage, [])

    def train_dataloader(self) -> DataLoader:
        if self.train_set is None:
            raise DataError(f"{self.name} has no training split")
        trainer = self.trainer
        self.check_one_batch(len(self.train_set), trainer.world_size if trainer else 1)
        return ResumableLoader(
            self.train_set, self.batch_size, progress=self._train_progress, seed=self.seed,
            num_replicas=trainer.world_size if trainer else 1, rank=trainer.global_rank if trainer else 0,
            num_workers=self.num_workers, collate_fn=collate, persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def check_one_batch(self, size: int, world_size: int) -> None:
        """Batches are whole (``drop_last``): data too small for one batch per process would train
        on nothing, and Lightning would only warn and exit 0; refuse it instead."""
        if size // world_size < self.batch_size:
            fit = size // world_size
            raise DataError(f"{self.name}/train: {size} training pairs over {world_size} process(es) give "
                            f"{fit} each, fewer than one batch of {self.batch_size} (batches are whole): "
                            + (f"set --data.batch_size {fit} or lower, or train on more data" if fit
                               else "train on more data or fewer processes"))

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
        kept = [r for r in records if (_hash_fraction(r.id) < self.val_fraction) == keep_val]
        if records and not kept:  # not a path problem: the fraction of this many records holds none
            what = "validation" if keep_val else "training"
            fix = ("raise --data.val_fraction, or set it to 0 for no validation" if keep_val
                   else "lower --data.val_fraction")
            raise DataError(f"{getattr(self, 'name', 'data')}/{split}: val_fraction {self.val_fraction} of "
                            f"{len(records)} training records leaves no {what} records; {fix}")
        return kept


