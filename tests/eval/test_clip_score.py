"""LongCLIPScore: CLIPScore's definition, 248-token captions, and every way of passing a model."""

import math
from types import SimpleNamespace

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image
from torch import nn

from mulclip_pl.eval import LongCLIPScore
from mulclip_pl.export.open_clip_dir import export_open_clip_dir
from mulclip_pl.module import MulCLIP
from mulclip_pl.tokenizer import LongTextTokenizer
from tests.conftest import TEST_MODEL

LONG = "Two dogs play in the park near a red bench. " * 8  # ~90 tokens: past CLIP's 77


class VectorModel(nn.Module):
    """Stand-in CLIP whose embeddings are given: images are their own embeddings, and the
    'tokenizer' below turns a caption into its embedding, so every cosine is known in advance."""

    context_length = 248
    visual = SimpleNamespace(image_size=2, image_mean=None, image_std=None)

    def __init__(self):
        super().__init__()
        self.logit_scale = nn.Parameter(torch.zeros(()))

    def encode_image(self, images):
        return images

    def encode_text(self, vectors):
        return vectors


TEXT_VECTORS = {"diagonal": [1.0, 1.0], "opposite": [-1.0, 0.0], "same": [0.0, 3.0]}


def vector_tokenizer(captions):
    return torch.tensor([TEXT_VECTORS[c] for c in captions])


def test_known_answer_clamps_each_pair_at_zero():
    metric = LongCLIPScore(VectorModel(), tokenizer=vector_tokenizer)
    images = torch.tensor([[2.0, 0.0], [1.0, 0.0], [0.0, 5.0]])
    scores = metric.pair_scores(images, ["diagonal", "opposite", "same"])
    # cos 1/sqrt(2) -> 70.71; cos -1 -> 0 (not -100); cos 1 -> 100
    torch.testing.assert_close(scores, torch.tensor([100 / math.sqrt(2), 0.0, 100.0]))
    metric.update(images[:2], ["diagonal", "opposite"])
    metric.update(torch.tensor([[0.0, 1.0], [0.0, 5.0]]), ["opposite", "same"])  # cos 0 -> 0, then 100
    assert metric.compute().item() == pytest.approx((100 / math.sqrt(2) + 0 + 0 + 100) / 4)


@pytest.fixture(scope="module")
def module():
    torch.manual_seed(0)
    return MulCLIP(model_name=TEST_MODEL).eval()


def _direct(module, images, captions):
    with torch.no_grad():
        cos = (module.encode_image(images) * module.encode_text(LongTextTokenizer()(captions))).sum(-1)
    return cos, 100 * cos.clamp(min=0)


def test_mulclip_score_equals_direct_computation_with_a_negative_pair(module):
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    captions = ["a photo of nothing", "a photo of nothing", "a red square", LONG]
    cos, expected = _direct(module, images, captions)
    assert (cos < 0).any() and (cos > 0).any()  # the fixture holds both kinds of pair
    metric = LongCLIPScore(module)
    metric.update(images[:2], captions[:2])
    metric.update(images[2:], captions[2:])
    assert metric.compute().item() == pytest.approx(expected.mean().item(), rel=1e-5)
    assert (metric.pair_scores(images, captions)[cos < 0] == 0).all()


def test_long_captions_are_read_past_77_tokens(module):
    image = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    caption = "a photo of nothing. " * 20  # ~100 tokens; scores ~9 in full, ~5 cut at 77
    metric = LongCLIPScore(module)
    assert LongTextTokenizer().count_tokens(caption) > 77
    full = metric.pair_scores(image, [caption])
    with torch.no_grad():
        cut = (module.encode_image(image) * module.encode_text(LongTextTokenizer(77)([caption]))).sum()
    assert full.item() > 0 and full.item() == pytest.approx(_direct(module, image, [caption])[1].item(), rel=1e-5)
    assert abs(full.item() - 100 * max(cut.item(), 0)) > 1.0  # the tail of the caption counted
    assert metric.n_truncated == 0


def test_checkpoint_path_open_clip_model_and_pil_images_agree(module, tmp_path):
    ckpt = tmp_path / "model.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, ckpt)
    export_open_clip_dir(module.backbone.clip, TEST_MODEL, tmp_path / "export")
    folder = f"local-dir:{tmp_path / 'export'}"
    rng = np.random.default_rng(0)
    pil = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(2)]
    captions = [LONG, "a red square"]
    transform = open_clip.image_transform(32, is_train=False)
    expected = _direct(module, torch.stack([transform(p) for p in pil]), captions)[1]
    for model, tokenizer in ((module, None), (str(ckpt), None),
                             (open_clip.create_model(folder), open_clip.get_tokenizer(folder))):
        scores = LongCLIPScore(model, tokenizer=tokenizer).pair_scores(pil, captions)
        torch.testing.assert_close(scores, expected, rtol=1e-4, atol=1e-4)


def test_misuse_is_named():
    metric = LongCLIPScore(VectorModel(), tokenizer=vector_tokenizer)
    with pytest.raises(ValueError, match="2 images but 1 captions"):
        metric.update(torch.ones(2, 2), ["same"])
    with pytest.raises(ValueError, match="before any update"):
        metric.compute()
    with pytest.raises(TypeError, match="open_clip CLIP"):
        LongCLIPScore(nn.Linear(2, 2))
