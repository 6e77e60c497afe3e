from unittest import mock

import open_clip
import pytest
import torch

from mulclip_pl.model.backbone import LENGTH_GROUPS, ClipBackbone, length_groups
from mulclip_pl.model.build import build_clip
from tests.conftest import TEST_MODEL

CAPTIONS = ["a red circle", "a small blue square in the top left corner of the picture, next to a green star"]


def test_parity_with_open_clip_before_stretch(tokenizer):
    torch.manual_seed(0)
    clip = build_clip(TEST_MODEL, context_length=77).eval()
    backbone = ClipBackbone(clip)
    images = torch.randn(3, 3, 32, 32)
    tokens = open_clip.get_tokenizer(TEST_MODEL)(CAPTIONS)  # open_clip's own 77-token ids
    with torch.no_grad():
        image, text = backbone.encode_image(images), backbone.encode_text(tokens)
        torch.testing.assert_close(image.v_cls, clip.encode_image(images))
        torch.testing.assert_close(text.t_eot, clip.encode_text(tokens), rtol=1e-5, atol=1e-5)
    assert image.v_loc.shape == (3, 16, 32)


def test_stretched_model_accepts_248_tokens_and_trimming_is_exact(tokenizer):
    torch.manual_seed(0)
    short = build_clip(TEST_MODEL, context_length=77)
    torch.manual_seed(0)
    clip = build_clip(TEST_MODEL).eval()
    assert clip.positional_embedding.shape[0] == 248
    torch.testing.assert_close(clip.positional_embedding[:20], short.positional_embedding[:20])
    tokens = tokenizer([CAPTIONS[0], "word " * 200])
    with torch.no_grad():
        ours = ClipBackbone(clip).encode_text(tokens)
        torch.testing.assert_close(ours.t_eot, clip.encode_text(tokens), rtol=1e-5, atol=1e-5)
    assert ours.word_mask.sum(1).tolist() == [3, 200]


def test_text_tokens_are_projected_like_eot(tokenizer):
    clip = build_clip(TEST_MODEL).eval()
    tokens = tokenizer(CAPTIONS)
    with torch.no_grad():
        text = ClipBackbone(clip).encode_text(tokens)
    eot = tokens.argmax(-1)
    torch.testing.assert_close(text.t_tokens[torch.arange(2), eot], text.t_eot)


@pytest.mark.parametrize("name,patches,dim", [("ViT-B-32", 49, 512), ("ViT-B-16", 196, 512), ("ViT-L-14", 256, 768)])
def test_shipped_vit_configs(name, patches, dim):
    clip = build_clip(name).eval()
    backbone = ClipBackbone(clip)
    assert backbone.num_patches == patches
    images = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        image = backbone.encode_image(images)
        torch.testing.assert_close(image.v_cls, clip.encode_image(images))
    assert image.v_loc.shape == (1, patches, dim)


def test_rows_encoded_in_length_groups_equal_open_clip_and_one_padded_batch(tokenizer):
    """128 captions of 3 to 60 words: four groups, each trimmed to its own longest; embeddings equal open_clip's,
    word features and gradients equal those of one batch padded to the longest."""
    torch.manual_seed(0)
    clip = build_clip(TEST_MODEL).eval()
    backbone = ClipBackbone(clip)
    words = "a small blue square in the top left corner next to a green star".split()
    captions = [" ".join(words[(i * 7) % 13:] + words * (i % 5))[: 4 * (i + 3)] for i in range(128)]
    tokens = tokenizer(captions)
    assert len(length_groups(tokens.argmax(-1))) == LENGTH_GROUPS
    grouped = backbone.encode_text(tokens)
    with torch.no_grad():
        torch.testing.assert_close(backbone.encode_text(tokens, with_tokens=False).t_eot, clip.encode_text(tokens),
                                   rtol=1e-5, atol=1e-5)
    with mock.patch("mulclip_pl.model.backbone.LENGTH_GROUPS", 1):
        padded = backbone.encode_text(tokens)
    torch.testing.assert_close(grouped.t_eot, padded.t_eot, rtol=1e-5, atol=1e-5)
    assert torch.equal(grouped.word_mask, padded.word_mask)
    mask = grouped.word_mask[..., None]
    torch.testing.assert_close(grouped.t_tokens * mask, padded.t_tokens * mask, rtol=1e-5, atol=1e-5)
    weights = torch.randn_like(grouped.t_tokens) * mask  # a loss on the words and on the pooled rows
    grads = [torch.autograd.grad((f.t_tokens * weights).sum() + f.t_eot.square().sum(), list(clip.transformer.parameters()))
             for f in (grouped, padded)]
    gaps = [float((ours - reference).norm() / reference.norm()) for ours, reference in zip(*grads)]
    assert max(gaps) < 1e-5, gaps  # fp32 sums in another order
