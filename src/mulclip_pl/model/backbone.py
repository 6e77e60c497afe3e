"""open_clip wrapper: images -> (v_cls, v_loc); texts -> (t_eot, t_tokens, word_mask).

Patch and word tokens go through the same final LayerNorm and projection as the pooled
tokens (METHOD.md, Notation), so local and global features live in one joint space. Features
are returned *unnormalised*, so that ``v_cls`` / ``t_eot`` equal open_clip's ``encode_image`` /
``encode_text`` exactly; the objectives normalise.
"""

from __future__ import annotations

from dataclasses import dataclass

import open_clip
import torch
import torch.nn.functional as F
from torch import nn

from mulclip_pl.model.value_attention import value_value_tokens

# Text rows are encoded in up to LENGTH_GROUPS groups of similar length, of at least MIN_GROUP_ROWS rows each.
LENGTH_GROUPS = 4
MIN_GROUP_ROWS = 32


def length_groups(eot_index: torch.Tensor) -> list[torch.Tensor]:
    """Row indices of ``eot_index`` sorted by length and cut into equal groups; one group for a small batch."""
    count = max(1, min(LENGTH_GROUPS, eot_index.shape[0] // MIN_GROUP_ROWS))
    if count == 1:
        return [torch.arange(eot_index.shape[0], device=eot_index.device)]
    return list(eot_index.argsort(stable=True).tensor_split(count))


@dataclass
class ImageFeatures:
    v_cls: torch.Tensor  # (B, d) projected CLS token
    v_loc: torch.Tensor  # (B, P, d) projected patch tokens
    v_tap: torch.Tensor | None = None  # (B, P, d) patch tokens of an earlier block (``tap_block``), projected


@dataclass
class TextFeatures:
    t_eot: torch.Tensor  # (B, d) projected EOT token
    t_tokens: torch.Tensor | None  # (B, L, d) projected per-position features (L trimmed to the batch)
    word_mask: torch.Tensor | None  # (B, L) True for word tokens (not SOT, EOT or padding)


class ClipBackbone(nn.Module):
    """The two CLIP towers, with access to local tokens; holds the open_clip model as ``clip``.

    Text features equal ``clip.encode_text``'s: both add ``clip.positional_embedding``, which a
    Long-CLIP layout computes from its two tables (``LongPositionsCLIP``).
    """

    def __init__(self, clip: nn.Module) -> None:
        super().__init__()
        visual = clip.visual
        if not hasattr(visual, "_pool") or getattr(visual, "attn_pool", None) is not None:
            raise ValueError(
                f"{type(visual).__name__} is not a plain open_clip ViT with a CLS token; "
                "MulCLIP needs patch tokens (use a ViT-* model)"
            )
        if getattr(visual, "pool_type", "tok") != "tok":
            raise ValueError(f"vision pool_type {visual.pool_type!r} unsupported: MulCLIP needs a CLS token")
        self.clip = clip
        # uint8 training batches (data/base.py, ``uint8_batches``) are normalised here, on the device.
        # Not buffers: a model cast to bf16 would round them too (mean 0.4815 -> 0.4805).
        self.pixel_mean = tuple(getattr(visual, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN)
        self.pixel_std = tuple(getattr(visual, "image_std", None) or open_clip.OPENAI_DATASET_STD)
        self._pixel_stats: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def num_patches(self) -> int:
        grid = self.clip.visual.grid_size
        return int(grid[0] * grid[1])

    @property
    def embed_dim(self) -> int:
        return int(self.clip.visual.output_dim)

    @property
    def context_length(self) -> int:
        return int(self.clip.context_length)

    @property
    def logit_scale(self) -> nn.Parameter:
        return self.clip.logit_scale

    @property
    def vision_depth(self) -> int:
        return len(self.clip.visual.transformer.resblocks)

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) pixels -> the model's input, as torchvision's ToTensor + Normalize
        compute it (same operations, same order); float images are taken as already normalised."""
        if images.dtype != torch.uint8:
            return images
        if self._pixel_stats is None or self._pixel_stats[0].device != images.device:
            self._pixel_stats = tuple(torch.tensor(values, device=images.device).view(1, 3, 1, 1)
                                      for values in (self.pixel_mean, self.pixel_std))
        mean, std = self._pixel_stats
        return images.float().div(255).sub(mean).div(std).to(self.clip.visual.conv1.weight.dtype)

    def encode_image(self, images: torch.Tensor, tap_block: int | None = None,
                     value_value: bool = False) -> ImageFeatures:
        """(B, 3, H, W) normalised floats, or uint8 pixels (normalised here). ``tap_block``: also
        return the patch tokens after that vision block (index into the blocks, negative from the
        end), through the same final LayerNorm and projection. ``value_value``: ``v_loc`` from the last
        block re-run with value-value attention and no MLP (model/value_attention.py); ``v_cls`` unchanged."""
        visual, depth = self.clip.visual, self.vision_depth
        x = visual._embeds(self.normalise(images))
        tap_index = None if tap_block is None else tap_block % depth
        last_input = depth - 2 if value_value else None  # the block before the last (-1: the embeddings)
        wanted = sorted(i for i in {tap_index, last_input} if i is not None and i >= 0)
        if wanted:  # open_clip's own loop, no forward hook: a compiled block (--model.compile) would not re-read its hooks
            out, states = visual.transformer.forward_intermediates(x, indices=wanted)
            tapped = dict(zip(wanted, states))
        else:
            out, tapped = visual.transformer(x), {}
        pooled, tokens = visual._pool(out)
        if value_value:
            mixed = value_value_tokens(visual.transformer.resblocks[-1], tapped.get(last_input, x),
                                       visual.transformer.grad_checkpointing)
            tokens = visual._pool(mixed)[1]
        tap = visual._pool(tapped[tap_index])[1] if tap_index is not None else None
        if visual.proj is not None:
            pooled, tokens = pooled @ visual.proj, tokens @ visual.proj
            tap = tap @ visual.proj if tap is not None else None
        return ImageFeatures(v_cls=pooled, v_loc=tokens, v_tap=tap)

    def encode_text(self, tokens: torch.Tensor, with_tokens: bool = True) -> TextFeatures:
        """Encode (N, L) token ids; trailing padding is trimmed first (exact, the mask is causal).

        Rows are encoded in groups of similar length, each trimmed to its own longest (``length_groups``):
        captions of 50 to 137 tokens padded to one width would spend a third of the tower on padding."""
        eot_index = tokens.argmax(dim=-1)  # EOT has the largest id in CLIP's vocabulary
        groups = length_groups(eot_index)
        lengths = (torch.stack([eot_index[rows].max() for rows in groups]) + 1).tolist()  # one host sync
        states = [self._text_states(tokens[rows, :length]) for rows, length in zip(groups, lengths)]
        order = torch.cat(groups).argsort() if len(groups) > 1 else None  # back to the input's row order
        if not with_tokens:
            pooled = torch.cat([x[torch.arange(len(rows), device=x.device), eot_index[rows]]
                                for x, rows in zip(states, groups)])
            t_eot = self._project_text(pooled if order is None else pooled[order])
            return TextFeatures(t_eot=t_eot, t_tokens=None, word_mask=None)
        length = max(lengths)
        x = torch.cat([F.pad(x, (0, 0, 0, length - x.shape[1])) for x in states])  # zeros past a group's longest
        x = self._project_text(x if order is None else x[order])
        positions = torch.arange(length, device=x.device)
        word_mask = (positions > 0) & (positions < eot_index[:, None])  # the zeros are never words
        rows = torch.arange(x.shape[0], device=x.device)
        return TextFeatures(t_eot=x[rows, eot_index], t_tokens=x, word_mask=word_mask)

    def _text_states(self, tokens: torch.Tensor) -> torch.Tensor:
        """(N, L) token ids, trimmed -> (N, L, width) states after the final LayerNorm, before the projection."""
        clip, length = self.clip, tokens.shape[1]
        cast_dtype = clip.transformer.get_cast_dtype()
        x = clip.token_embedding(tokens).to(cast_dtype) + clip.positional_embedding[:length].to(cast_dtype)
        x = clip.transformer(x, attn_mask=clip.attn_mask[:length, :length])
        return clip.ln_final(x)

    def _project_text(self, x: torch.Tensor) -> torch.Tensor:
        projection = self.clip.text_projection
        if projection is None:
            return x
        return projection(x) if isinstance(projection, nn.Linear) else x @ projection
