"""Torch datasets that turn records into tensors, and their collate functions.

Images are opened here, in the loader workers (``images.load_image``). Under the ``skip`` policy a
bad item is never simply dropped from a training batch: every rank must keep its batch size, or the
batch-level losses gather unequal sizes across processes (gloo aborts, NCCL can hang). So a training
dataset serves a *replacement* in its place, chosen deterministically from (seed, epoch, index) so
that a resumed run sees the same one, never an item already in its batch (a twin would be its own
false negative), and the sample carries the bad items it stands for. Evaluation datasets return a
``Skipped`` marker that the collate function drops. Either way the collate function counts them in
the batch (``n_skipped``, ``skipped``), from any worker.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from collections.abc import Callable, Collection, Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset, default_collate
from torchvision.transforms import Compose, Normalize, PILToTensor

from mulclip_pl.data.caption_tokens import CaptionFields, TokenisedCaption, tokenise_caption
from mulclip_pl.data.images import load_image
from mulclip_pl.data.records import BadInputPolicy, LabeledImage, Record
from mulclip_pl.data.text import SentenceSelection, SentenceSplitter, SummarySource
from mulclip_pl.errors import DataError
from mulclip_pl.tokenizer import LongTextTokenizer

Transform = Callable[[Image.Image], torch.Tensor]


@dataclass
class Skipped:
    item: str
    reason: str

    def __str__(self) -> str:
        return f"{self.item}: {self.reason}"


MAX_REPLACEMENT_TRIES = 64  # bad items in a row before a training sample gives up (the data is mostly broken)


def replace_bad_sample(bad: Skipped, index: int, seed: int, pool: Sequence[int], build: Callable[[int], object],
                       batch: Collection[int] = ()) -> dict:
    """A good sample in place of item ``index`` (``bad``): drawn from ``pool`` by a generator
    seeded with ``seed``, never an item already tried nor one of ``batch``.

    ``batch``: the items already in the stand-in's batch (its members and earlier stand-ins). A copy
    of one of them would be a false negative of its own twin when identical texts are negatives.
    ``build(i)`` returns a sample or a ``Skipped``. The draw depends only on ``seed``, ``pool`` and
    ``batch`` (the sampler's, itself a function of seed and epoch), so the same bad item gets the
    same stand-in in every run, worker layout and resume. The stand-in carries ``skipped = [bad]``,
    to be counted and listed (a bad candidate met on the way is counted when its own turn in the
    epoch comes, so each bad item counts once an epoch).
    """
    rng = random.Random(seed)
    blocked = {index, *batch}
    candidates = len(pool) - sum(1 for item in blocked if item in pool)  # range or short list: cheap tests
    tried, last = 0, bad
    while tried < min(MAX_REPLACEMENT_TRIES, candidates):
        other = pool[rng.randrange(len(pool))]
        if other in blocked:
            continue
        blocked.add(other)
        tried += 1
        sample = build(other)
        if not isinstance(sample, Skipped):
            sample["skipped"] = [bad]
            return sample
        last = sample
    if tried == 0:
        raise DataError(f"no item outside the batch of bad item {bad} is left to stand in for it ({len(pool)} "
                        f"items to draw from, {len(blocked)} in the batch): lower --data.batch_size, or fix or "
                        "remove the file")
    raise DataError(f"{tried} training items in a row were bad (first: {bad}; last: {last}), no good one "
                    "left to stand in for them: check the files (data.bad_input=error stops at the first)")


@dataclass
class CaptionEncoder:
    """Long caption -> long tokens, summary tokens, up to M sentence tokens and their mask.

    Text work is done once per caption: the sentences are BPE-encoded and the long caption's ids
    are theirs concatenated (``data/caption_tokens.py``); prepared shards store the same ids.
    """

    tokenizer: LongTextTokenizer
    splitter: SentenceSplitter
    max_sentences: int = 10
    selection: SentenceSelection = "random"
    summary_source: SummarySource = "dataset"

    def __post_init__(self) -> None:
        self.fields = CaptionFields(self.tokenizer.context_length, self.max_sentences, self.selection,
                                    self.summary_source, self.tokenizer.overflow)

    def tokenise(self, record: Record) -> TokenisedCaption:
        sentences = self.splitter(record.caption) or [record.caption]
        summary = record.summary if self.summary_source == "dataset" else None
        return tokenise_caption(self.tokenizer, record.caption, sentences, summary)

    def __call__(self, record: Record, rng: random.Random | None = None) -> dict[str, torch.Tensor]:
        return self.fields(self.tokenise(record), rng, record.id)


class _ImageItems(Dataset):
    """Items with an image: loading, the transform and the bad-input policy live here once."""

    decode_min_side: int | None = None  # reduced-scale JPEG decoding: training only

    def __init__(self, items: list, transform: Transform, policy: BadInputPolicy) -> None:
        self.items, self.transform, self.policy = items, transform, policy

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: int | tuple[int, int]):
        """``key`` is an index, or ``(epoch, index)`` from ``ResumableShuffle`` (seeds per-sample randomness)."""
        epoch, index = key if isinstance(key, tuple) else (0, key)
        return self.sample(epoch, index)

    def sample(self, epoch: int, index: int):
        """Item ``index`` as tensors, or a ``Skipped`` marker under the skip policy."""
        item = self.items[index]
        try:
            pixels = getattr(item, "pixels", None)
            image = Image.fromarray(pixels) if pixels is not None else load_image(item.image, item.id, self.decode_min_side)
        except DataError as exc:
            if self.policy == "error":
                raise
            return Skipped(item.id, str(exc))
        return {"index": index, "image": self.transform_image(image, epoch, index), **self.fields(item, epoch, index)}

    def transform_image(self, image: Image.Image, epoch: int, index: int) -> torch.Tensor:
        return self.transform(image)

    def fields(self, item, epoch: int, index: int) -> dict:
        raise NotImplementedError

    @property
    def records(self) -> list:
        return self.items


class PairDataset(_ImageItems):
    """Training pairs: image + long caption + summary + subcaptions.

    A sample's randomness (its augmentation, which subcaptions it keeps) is seeded from
    ``(seed, epoch, index)``: the same in every run, worker layout and resume (Lightning prefetches
    a batch before a checkpoint is written, so global RNG streams cannot be resumed exactly), and
    different each epoch.
    """

    def __init__(self, records: list[Record], transform: Transform, text: CaptionEncoder, policy: BadInputPolicy,
                 seed: int = 0):
        super().__init__(records, transform, policy)
        self.text, self.seed = text, seed
        self.decode_min_side = _transform_size(transform)

    def _sample_seed(self, epoch: int, index: int) -> int:
        return hash((self.seed, epoch, index)) & 0xFFFF_FFFF_FFFF

    def __getitem__(self, key: int | tuple[int, int]):
        return self.__getitems__([key])[0]

    def __getitems__(self, keys: list) -> list:
        """The samples of one batch (a DataLoader asks for whole batches through this method), bad
        items replaced by stand-ins from outside the batch (``replace_bad_sample``'s ``batch``)."""
        pairs = [key if isinstance(key, tuple) else (0, key) for key in keys]
        taken = {index for _, index in pairs}
        samples = []
        for epoch, index in pairs:
            sample = self.or_replacement(self.sample(epoch, index), epoch, index, range(len(self)),
                                         lambda other, epoch=epoch: self.sample(epoch, other), taken)
            taken.add(sample["index"])
            samples.append(sample)
        return samples

    def or_replacement(self, sample, epoch: int, index: int, pool: Sequence[int], build: Callable[[int], object],
                       batch: Collection[int] = ()):
        """``sample``, or when it is bad a stand-in from ``pool``, none of ``batch`` (see ``replace_bad_sample``)."""
        if not isinstance(sample, Skipped):
            return sample
        return replace_bad_sample(sample, index, self._sample_seed(epoch, index) ^ _REPLACEMENT_STREAM, pool, build,
                                  batch)

    def transform_image(self, image: Image.Image, epoch: int, index: int) -> torch.Tensor:
        # torchvision's random transforms draw from the CPU generator. It is seeded directly:
        # ``torch.manual_seed`` also queues a seed for every lazy accelerator backend, capturing a
        # stack trace each time (~1 ms a sample, a fifth of a prepared sample's cost).
        generator = torch.default_generator
        state = generator.get_state()
        generator.manual_seed(self._sample_seed(epoch, index))
        try:
            return self.transform(image)
        finally:
            generator.set_state(state)

    def fields(self, record: Record, epoch: int, index: int) -> dict:
        return self.text(record, random.Random(self._sample_seed(epoch, index)))


_REPLACEMENT_STREAM = 0x5EED_BAD  # the stand-in draw: a stream apart from the sample's own augmentation


class RetrievalDataset(_ImageItems):
    """Evaluation items: one image with all its captions (tokenised), ids for deduplication, and
    the hard negatives of its first caption when the records carry them (``negatives`` (N, L))."""

    def __init__(self, records: list[Record], transform: Transform, tokenizer: LongTextTokenizer, policy: BadInputPolicy):
        super().__init__(records, transform, policy)
        self.tokenizer = tokenizer
        counts = torch.tensor([len(r.captions) for r in records])
        self.caption_offsets = torch.cumsum(counts, 0) - counts
        negative_counts = sorted({len(r.negatives) for r in records})
        if len(negative_counts) > 1:
            example = next(r for r in records if len(r.negatives) != negative_counts[-1])
            raise DataError(f"records carry different numbers of hard negatives {negative_counts} (e.g. {example.id} "
                            f"has {len(example.negatives)}); give every record of a split the same number")
        self.has_negatives = negative_counts[-1:] not in ([], [0])

    def fields(self, record: Record, epoch: int, index: int) -> dict:
        captions = self.tokenizer(list(record.captions))
        first = int(self.caption_offsets[index])
        fields = {
            "captions": captions,
            "caption_index": torch.arange(first, first + len(captions)),
            "caption_image": torch.full((len(captions),), index),
        }
        if self.has_negatives:
            fields["negatives"] = self.tokenizer(list(record.negatives))
        return fields


class ClassificationDataset(_ImageItems):
    """Zero-shot classification items: image and class label."""

    def fields(self, item: LabeledImage, epoch: int, index: int) -> dict:
        return {"label": item.label}


def _transform_size(transform: Transform) -> int | None:
    """The output side of an open_clip transform (its first step), to decode no larger than needed."""
    first = getattr(transform, "transforms", [None])[0]
    size = getattr(first, "size", None)
    return (max(size) if isinstance(size, (tuple, list)) else size) or None


def uint8_pixels(transform: Transform) -> Transform:
    """An open_clip transform that stops before ToTensor + Normalize: (3, H, W) uint8 pixels.

    The model normalises them on its device (``ClipBackbone.normalise``): the same values, from a
    quarter of the bytes and without the float work in the loader workers.
    """
    steps = list(getattr(transform, "transforms", []))
    if len(steps) < 2 or not isinstance(steps[-1], Normalize) or type(steps[-2]).__name__ not in ("MaybeToTensor", "ToTensor"):
        raise ValueError(f"expected an open_clip transform ending in ToTensor + Normalize, got {transform}")
    return Compose([*steps[:-2], PILToTensor()])


def collate(samples: list) -> dict:
    """Stack good samples; count bad ones (dropped, or replaced in training); concatenate
    variable-size caption groups."""
    good = [s for s in samples if not isinstance(s, Skipped)]
    skipped = [str(s) for s in samples if isinstance(s, Skipped)]
    skipped += [str(bad) for s in good for bad in s.pop("skipped", ())]
    batch = {}
    if good:
        flat_keys = {"captions", "caption_index", "caption_image"} & good[0].keys()
        batch = default_collate([{k: v for k, v in s.items() if k not in flat_keys} for s in good])
        batch.update({k: torch.cat([s[k] for s in good]) for k in flat_keys})
    if "n_truncated" in batch:
        batch["n_truncated"] = int(batch["n_truncated"].sum())
    batch["n_skipped"] = len(skipped)
    batch["skipped"] = skipped
    return batch
