"""The bookkeeping of one validation or test pass: which metric belongs to which eval set.

A datamodule lists its evaluation sets (``eval_sets(stage)``); the ``Evaluator`` builds one
metric group per set (retrieval R@K, plus hard-negative accuracy where the set has negatives;
zero-shot top-1/top-5 with prompt-ensembled class embeddings; for ``boxes`` sets such as FG-OVD,
hard-negative accuracy of each box against its positive and negative captions), updates it
batch by batch and returns plain floats per set. The LightningModule only forwards batches and
logs the result.

Within one pass a text is encoded once (``TextCache``), in batches of texts of similar length so
that little padding is encoded. A set may carry several views of its hard negatives side by side
(``negative_views``: SynthLong scores each image against ten kinds): the images and positives are
then encoded once for all views, and each view is scored on its own columns of the negatives.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from mulclip_pl.metrics.hard_negatives import HardNegativeAccuracy
from mulclip_pl.metrics.regions import box_embeddings
from mulclip_pl.metrics.retrieval import RetrievalRecall, TieRule
from mulclip_pl.metrics.zeroshot import ZeroShotAccuracy, build_zeroshot_classifier
from mulclip_pl.tokenizer import LongTextTokenizer

Encoder = Callable[[torch.Tensor], torch.Tensor]
PatchEncoder = Callable[[torch.Tensor], Any]  # images -> features with ``v_loc`` (B, P, d), e.g. MulCLIP.encode_patches


class Evaluator(nn.Module):
    """Metrics for the eval sets of one pass; holds no weights (nothing lands in checkpoints)."""

    def __init__(self, ties: TieRule = "pessimistic") -> None:
        super().__init__()
        self.ties = ties  # how equal retrieval scores count (metrics/retrieval.py)
        self.metrics = nn.ModuleDict()
        self.sets: list = []
        self.class_weights: dict[str, torch.Tensor] = {}
        self.views: list[dict[str, tuple[int, int]]] = []  # per set: hard-negative view -> its columns
        self.text_cache = TextCache()

    def prepare(self, datamodule: Any, stage: str, encode_text: Encoder, context_length: int,
                device: torch.device) -> None:
        """Fresh metrics for ``datamodule.eval_sets(stage)`` (none for a datamodule without any)."""
        self.metrics, self.text_cache = nn.ModuleDict(), TextCache()
        self.sets = list(datamodule.eval_sets(stage)) if hasattr(datamodule, "eval_sets") else []
        self.views = [dict(getattr(spec, "negative_views", None) or {spec.name: (0, None)}) for spec in self.sets]
        tokenizer = LongTextTokenizer(context_length)
        for spec, views in zip(self.sets, self.views):
            group = nn.ModuleDict()
            if spec.kind == "retrieval":
                if spec.recall:
                    group["retrieval"] = RetrievalRecall(ties=self.ties)
                if spec.hard_negatives:
                    group["hard_negatives"] = HardNegativeAccuracy()
                    for view in list(views)[1:]:  # a group per further view: its own row in the results
                        self.metrics[view] = nn.ModuleDict({"hard_negatives": HardNegativeAccuracy()}).to(device)
            elif spec.kind == "boxes":
                group["hard_negatives"] = HardNegativeAccuracy()
            else:
                self.class_weights[spec.name] = build_zeroshot_classifier(encode_text, tokenizer, spec.class_names, device)
                group["zeroshot"] = ZeroShotAccuracy()
            self.metrics[spec.name] = group.to(device)
        self.metrics = nn.ModuleDict(sorted(self.metrics.items(), key=lambda item: self._order(item[0])))

    def _order(self, name: str) -> int:
        """Rows in the order of the sets, each set's views after it (the order results are listed in)."""
        names = [view for views in self.views for view in views]
        return names.index(name) if name in names else len(names)

    def update(self, batch: dict[str, torch.Tensor], dataloader_idx: int, encode_image: Encoder,
               encode_text: Encoder, encode_patches: PatchEncoder | None = None) -> None:
        """``encode_patches`` is needed only by box sets that pool patch tokens (FG-OVD roi mode)."""
        spec = self.sets[dataloader_idx]
        group = self.metrics[spec.name]
        encode_text = self.text_cache.wrap(encode_text)
        if spec.kind == "boxes":
            self._update_boxes(batch, group, encode_image, encode_text, encode_patches)
            return
        image_emb = encode_image(batch["image"])
        if spec.kind != "retrieval":
            group["zeroshot"].update(image_emb @ self.class_weights[spec.name].T, batch["label"], batch["index"])
            return
        text_emb = encode_text(batch["captions"])
        if "retrieval" in group:
            group["retrieval"].update(image_emb, batch["index"], text_emb, batch["caption_index"], batch["caption_image"])
        if "hard_negatives" in group:
            negatives = batch["negatives"]  # (B, N, L): altered copies of each image's first caption
            negative_emb = encode_text(negatives.flatten(0, 1)).view(*negatives.shape[:2], -1)
            positive_emb = text_emb[_first_caption(batch["caption_image"])]
            for view, (start, stop) in self.views[dataloader_idx].items():
                self.metrics[view]["hard_negatives"].update(image_emb, positive_emb, negative_emb[:, start:stop],
                                                            batch["index"])

    @staticmethod
    def _update_boxes(batch: dict[str, torch.Tensor], group: nn.ModuleDict, encode_image: Encoder,
                      encode_text: Encoder, encode_patches: PatchEncoder | None) -> None:
        """One box per item against its captions ``texts`` (B, 1 + N, L), the positive first."""
        texts = batch["texts"]
        text_emb = encode_text(texts.flatten(0, 1)).view(*texts.shape[:2], -1)
        if "box" in batch:  # roi: patch tokens of the whole image, pooled inside the box
            if encode_patches is None:
                raise ValueError("this box set pools patch tokens (box_features='roi'); pass encode_patches")
            image_emb = box_embeddings(encode_patches(batch["image"]).v_loc, batch["box"])
        else:  # crop: the box was cut out and is encoded as an image
            image_emb = encode_image(batch["image"])
        group["hard_negatives"].update(image_emb, text_emb[:, 0], text_emb[:, 1:], batch["index"])

    def compute(self) -> dict[str, dict[str, float]]:
        """Per set, every metric as a float; metrics are reset for the next pass."""
        results = {}
        for name, group in self.metrics.items():
            results[name] = {}
            for metric in group.values():
                results[name].update({k: float(v) for k, v in metric.compute().items()})
                metric.reset()
        return results


class TextCache:
    """Text embeddings of one evaluation pass, keyed by token ids (the model does not change within
    a pass). ``wrap(encode)`` encodes only the rows it has not seen, sorted by length and in groups
    of ``group`` rows: the text tower trims each call's padding to its longest row (exact: the mask
    is causal), so a group of similar lengths encodes almost no padding. SynthLong's captions run
    from about 40 to 170 tokens; encoded together, every one of them paid for the longest."""

    def __init__(self, group: int = 256) -> None:
        self.embeddings: dict[bytes, torch.Tensor] = {}
        self.group = group

    def wrap(self, encode: Encoder) -> Encoder:
        def cached(tokens: torch.Tensor) -> torch.Tensor:
            keys = [row.tobytes() for row in tokens.cpu().numpy()]
            missing = {key: i for i, key in enumerate(keys) if key not in self.embeddings}  # duplicates once
            if missing:
                rows = torch.tensor(list(missing.values()), device=tokens.device)
                order = rows[torch.argsort(tokens[rows].argmax(dim=-1), stable=True)]  # by EOT position: length
                for start in range(0, len(order), self.group):
                    chunk = order[start:start + self.group]
                    self.embeddings.update(zip((keys[i] for i in chunk.tolist()), encode(tokens[chunk])))
            return torch.stack([self.embeddings[key] for key in keys])
        return cached


def _first_caption(caption_image: torch.Tensor) -> torch.Tensor:
    """Positions of each image's first caption in a batch's flat caption list (captions of one
    image are contiguous)."""
    first = torch.ones_like(caption_image, dtype=torch.bool)
    first[1:] = caption_image[1:] != caption_image[:-1]
    return first
