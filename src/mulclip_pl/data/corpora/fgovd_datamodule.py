"""``FGOVD``: fine-grained object descriptions (FG-OVD), one box against 1 positive + 10 negatives.

Each split (hard, medium, easy, trivial) is one evaluation set of kind ``boxes``; the evaluator
scores ``hard_negative_acc``: the percentage of boxes whose positive caption scores strictly
above all 10 negatives (top-1 of 11, ties count against). How a box becomes an embedding:
- ``crop`` (default): the box is cut out and encoded as an image (the model's eval transform);
- ``roi``: the whole image is resized to a square and the patch tokens inside the box are pooled
  with RoIAlign, as FG-CLIP does (``metrics/regions.py``).
"""

from __future__ import annotations

import math
from typing import Literal

import open_clip
import torch
from PIL import Image

from mulclip_pl.data.base import BaseDataModule, EvalSet
from mulclip_pl.data.corpora.fgovd import NUM_NEGATIVES, BoxRecord, FGOVDSplit, read_fgovd, split_file
from mulclip_pl.data.datasets import Transform, _ImageItems
from mulclip_pl.data.records import BadInputPolicy, ProblemLog
from mulclip_pl.errors import DataError
from mulclip_pl.tokenizer import LongTextTokenizer

BoxFeatures = Literal["crop", "roi"]


class BoxCaptionDataset(_ImageItems):
    """Items: ``image`` (the crop, or the squashed whole image), ``texts`` (1 + N, L) with the
    positive first, ``box`` (4,) as (x1, y1, x2, y2) fractions of the image (roi mode only)."""

    def __init__(self, records: list[BoxRecord], transform: Transform, tokenizer: LongTextTokenizer,
                 policy: BadInputPolicy, box_features: BoxFeatures = "crop"):
        super().__init__(records, transform, policy)
        self.tokenizer, self.box_features = tokenizer, box_features

    def transform_image(self, image: Image.Image, epoch: int, index: int) -> torch.Tensor:
        if self.box_features == "crop":
            image = image.crop(crop_rectangle(self.items[index].box, image.size))
        return self.transform(image)

    def fields(self, record: BoxRecord, epoch: int, index: int) -> dict:
        fields = {"texts": self.tokenizer([record.caption, *record.negatives])}
        if self.box_features == "roi":
            x, y, w, h = record.box
            width, height = record.image_size
            fields["box"] = torch.tensor([x / width, y / height, (x + w) / width, (y + h) / height]).clamp(0, 1)
        return fields


def crop_rectangle(box: tuple[float, float, float, float], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Pixel rectangle (left, top, right, bottom) covering the box, inside the image, at least 1 px."""
    x, y, w, h = box
    left, top = min(max(0, math.floor(x)), size[0] - 1), min(max(0, math.floor(y)), size[1] - 1)
    return left, top, max(left + 1, min(size[0], math.ceil(x + w))), max(top + 1, min(size[1], math.ceil(y + h)))


class FGOVD(BaseDataModule):
    """FG-OVD with FG-CLIP's jsonl files (evaluation only); one eval set per split, named ``<name>_<split>``.

    Args:
        root: folder with the split files (h_/m_/e_attributes_llava.jsonl or 1_/2_/3_attributes_llava.jsonl,
            shuffle_negatives_llava.jsonl).
        image_root: COCO's val2017 folder, or the folder holding val2017/; None = root.
        splits: which difficulty splits to score.
        box_features: 'crop' (encode the cropped box) or 'roi' (RoIAlign over patch tokens, FG-CLIP's way).
        num_negatives: negatives every row must have (FG-OVD: 10); rows with another count are bad input.
    """

    default_name = "fgovd"

    def __init__(self, root: str, image_root: str | None = None,
                 splits: list[FGOVDSplit] = ["hard", "medium", "easy", "trivial"],  # noqa: B006 (jsonargparse default)
                 box_features: BoxFeatures = "crop", num_negatives: int = NUM_NEGATIVES, **kwargs) -> None:
        super().__init__(**kwargs)
        if box_features not in ("crop", "roi"):
            raise ValueError(f"data.box_features must be 'crop' or 'roi' (got {box_features!r})")
        if not splits:
            raise ValueError("data.splits must name at least one of hard, medium, easy, trivial")
        self.root, self.image_root = root, image_root or root
        self.splits, self.box_features, self.num_negatives = list(splits), box_features, num_negatives

    def available_splits(self):
        return ("test",)

    def transform(self, train: bool):
        if self.box_features == "crop":
            return super().transform(train=False)
        cfg = self._config()  # roi: squash, never crop, so that the box stays where the file says
        return open_clip.image_transform(cfg["image_size"], is_train=False, mean=cfg["mean"], std=cfg["std"],
                                         resize_mode="squash")

    def build_eval_sets(self, split):
        if split not in self.available_splits():
            return []
        sets = []
        for name in self.splits:
            problems = ProblemLog(self._policy(split), where=f"{self.name}/{name}")
            records = read_fgovd(split_file(self.root, name), self.image_root, problems, self.num_negatives)
            problems.log_summary()
            self.problems.append(problems)
            if not records:
                raise DataError(f"{self.name}/{name}: no usable rows (check data.root and data.image_root)")
            dataset = BoxCaptionDataset(records, self.transform(train=False), self.tokenizer(), self._policy(split),
                                        self.box_features)
            sets.append(EvalSet(f"{self.name}_{name}", "boxes", dataset))
        return sets
