"""CLIPScore for long captions: reference-free caption quality with a 248-token text encoder.

CLIPScore (Hessel et al., 2021) rates a caption by how close it lands to its image:
``100 * max(cos(image, caption), 0)`` per pair, averaged over pairs. torchmetrics' own
``CLIPScore`` cuts captions at CLIP's 77 tokens, which scores only the first sentence or two of a
long caption; this one runs any MulCLIP / Long-CLIP / open_clip model at its own context.

Unlike torchmetrics' ``CLIPScore``, which clamps the *average* at 0, each pair is clamped (the
paper's definition), so one unrelated pair cannot pull a good corpus below its true score.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import open_clip
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torchmetrics import Metric

from mulclip_pl.data.images import load_image, upright
from mulclip_pl.module import MulCLIP
from mulclip_pl.tokenizer import LongTextTokenizer, OverflowPolicy

Tokenizer = Callable[[Sequence[str]], torch.Tensor]


class LongCLIPScore(Metric):
    """Mean CLIPScore of (image, caption) pairs, captions up to the model's context (248 after stretch).

    Args:
        model: a ``MulCLIP`` module, a ``mulclip-pl fit`` checkpoint path (read by ``MulCLIP.load_trained``),
            or an open_clip ``CLIP`` (e.g. ``open_clip.create_model('local-dir:EXPORT')``, or a
            Long-CLIP model built by ``mulclip_pl.model.build.build_clip``).
        tokenizer: texts -> (N, L) token ids; default: open_clip's BPE at the model's context.
        overflow: what the default tokenizer does with a caption longer than the context:
            ``truncate`` (counted in ``n_truncated``, first one logged) or ``error``.

    ``update(images, captions)``: ``images`` is a (B, 3, H, W) tensor already preprocessed for
    the model, or a list of PIL images or image paths (preprocessed here with the model's eval
    transform, turned upright by their EXIF orientation as a viewer shows them, and so as the
    caption describes them).
    """

    higher_is_better = True
    is_differentiable = False
    full_state_update = False
    plot_lower_bound, plot_upper_bound = 0.0, 100.0

    def __init__(
        self,
        model: nn.Module | str | Path,
        tokenizer: Tokenizer | None = None,
        overflow: OverflowPolicy = "truncate",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.clip = _open_clip_model(model).eval()
        context = int(self.clip.context_length)
        self.tokenizer = tokenizer or LongTextTokenizer(context, overflow)
        visual = self.clip.visual
        size = visual.image_size
        self.image_transform = open_clip.image_transform(
            size[0] if isinstance(size, tuple) else size, is_train=False,
            mean=getattr(visual, "image_mean", None), std=getattr(visual, "image_std", None),
        )
        self.add_state("score_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("n_pairs", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    @property
    def n_truncated(self) -> int:
        """Captions cut to fit the context so far (only counted by the default tokenizer)."""
        return getattr(self.tokenizer, "n_truncated", 0)

    @torch.no_grad()
    def pair_scores(self, images: torch.Tensor | Sequence[Any], captions: str | Sequence[str]) -> torch.Tensor:
        """(B,) CLIPScore of each (image, caption) pair, without adding them to the metric."""
        captions = [captions] if isinstance(captions, str) else list(captions)
        if not torch.is_tensor(images):
            images = torch.stack([self.image_transform(_picture(image)) for image in images])
        if images.shape[0] != len(captions):
            raise ValueError(f"got {images.shape[0]} images but {len(captions)} captions; pass one caption per image")
        device = self.clip.logit_scale.device
        image_emb = F.normalize(self.clip.encode_image(images.to(device)).float(), dim=-1)
        text_emb = F.normalize(self.clip.encode_text(self.tokenizer(captions).to(device)).float(), dim=-1)
        return 100.0 * (image_emb * text_emb).sum(dim=-1).clamp(min=0)

    def update(self, images: torch.Tensor | Sequence[Any], captions: str | Sequence[str]) -> None:
        scores = self.pair_scores(images, captions)
        self.score_sum += scores.sum().to(self.score_sum)
        self.n_pairs += scores.numel()

    def compute(self) -> torch.Tensor:
        if self.n_pairs == 0:
            raise ValueError("LongCLIPScore.compute() before any update(): no pairs scored")
        return (self.score_sum / self.n_pairs).float()


def _picture(image: Image.Image | str | Path) -> Image.Image:
    """A PIL image upright, or an image file opened as the loaders open it (``load_image``)."""
    if isinstance(image, (str, Path)):
        return load_image(image, Path(image).name)
    return upright(image)


def _open_clip_model(model: nn.Module | str | Path) -> nn.Module:
    """The open_clip CLIP inside whatever was passed. A MulCLIP's ``encode_image`` / ``encode_text``
    are its open_clip towers' (normalised), so the towers alone give the same scores without
    carrying the training heads into the metric."""
    if isinstance(model, (str, Path)):
        model = MulCLIP.load_trained(model)
    backbone = getattr(model, "backbone", None)
    clip = getattr(backbone, "clip", model)
    if not all(hasattr(clip, name) for name in ("encode_image", "encode_text", "visual", "context_length")):
        raise TypeError(
            f"LongCLIPScore needs a MulCLIP module, a checkpoint path or an open_clip CLIP model, got "
            f"{type(model).__name__}"
        )
    return clip
