"""Reviewer ablations: WPR with the text-side calibration off, or on raw tokens (no LTC heads)."""

import pytest
import torch
import torch.nn.functional as F

from mulclip_pl.module import MulCLIP
from mulclip_pl.objectives.wpr import word_patch_reconstruction_loss
from tests.conftest import TEST_MODEL, make_batch


def _per_sample_reference(v, t, mask, tau_r, tau_w):
    """WPR one sample at a time on its valid word tokens only (loops are fine in a test)."""
    image_terms, text_terms = [], []
    for b in range(v.shape[0]):
        words = t[b, mask[b]]
        affinity = v[b] @ words.T / tau_r
        v_rec = F.normalize(affinity.softmax(1) @ words, dim=-1)
        t_rec = F.normalize(affinity.T.softmax(1) @ v[b], dim=-1)
        image_terms.append(F.cross_entropy(v[b] @ v_rec.T / tau_w, torch.arange(len(v[b])), reduction="none"))
        text_terms.append(F.cross_entropy(words @ t_rec.T / tau_w, torch.arange(len(words)), reduction="none"))
    return torch.cat(image_terms).mean(), torch.cat(text_terms).mean()


def test_wpr_on_raw_words_ignores_padding():
    torch.manual_seed(0)
    v = F.normalize(torch.randn(3, 5, 8), dim=-1)
    t = F.normalize(torch.randn(3, 7, 8), dim=-1)
    mask = torch.tensor([[0, 1, 1, 1, 0, 0, 0], [0, 1, 1, 1, 1, 1, 0], [0, 1, 0, 0, 0, 0, 0]], dtype=torch.bool)
    loss = word_patch_reconstruction_loss(v, t, 0.07, 0.1, t_mask=mask)
    image, text = _per_sample_reference(v, t, mask, 0.07, 0.1)
    torch.testing.assert_close(loss.image, image)
    torch.testing.assert_close(loss.text, text)
    padded = t.masked_fill(~mask[..., None], 5.0)  # whatever sits in the padding changes nothing
    torch.testing.assert_close(word_patch_reconstruction_loss(v, padded, 0.07, 0.1, t_mask=mask).total, loss.total)


@pytest.mark.parametrize("calibration,image_head,text_head", [("both", True, True), ("image", True, False),
                                                               ("none", False, False)])
def test_calibration_option_builds_only_the_heads_it_names_and_trains(calibration, image_head, text_head, tokenizer):
    torch.manual_seed(0)
    module = MulCLIP(model_name=TEST_MODEL, calibration=calibration)
    assert (module.image_calibration is not None, module.text_calibration is not None) == (image_head, text_head)
    losses = module.compute_losses(make_batch(4, tokenizer))
    assert torch.isfinite(losses.terms["word"]) and losses.terms["word"] > 0
    losses.total.backward()
    assert module.backbone.clip.visual.proj.grad.abs().sum() > 0
    heads = [h for h in (module.image_calibration, module.text_calibration) if h is not None]
    assert all(p.grad is not None for h in heads for p in h.parameters())


def test_calibration_option_is_validated():
    with pytest.raises(ValueError, match="model.calibration"):
        MulCLIP(model_name=TEST_MODEL, calibration="text")
