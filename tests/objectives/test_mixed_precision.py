"""Under bf16 autocast the objectives see bf16 features yet compute in fp32.

The features come out of a Linear layer run under ``torch.autocast('cpu', dtype=torch.bfloat16)``,
so they arrive as bf16, as they do in training. The reference is the same (bf16-rounded) features
cast to fp32 and scored without autocast, so the differences measure only the arithmetic
precision inside the objectives, not the rounding of their inputs.
"""

import pytest
import torch
import torch.nn.functional as F

from mulclip_pl.objectives.contrastive import infonce
from mulclip_pl.objectives.sap import patch_weights, subcaption_patch_loss
from mulclip_pl.objectives.wpr import reconstruct, word_patch_reconstruction_loss

BF16 = dict(device_type="cpu", dtype=torch.bfloat16)
SCALE = torch.tensor(100.0)  # CLIP's logit scale at its clamp: the most precision-hungry setting


def _bf16_features(*shape, d_in=64, d=32, seed=0):
    """Unit-norm (..., d) bf16 features produced by a Linear layer under bf16 autocast."""
    g = torch.Generator().manual_seed(seed)
    proj = torch.nn.Linear(d_in, d)
    x = torch.randn(*shape, d_in, generator=g)
    with torch.no_grad(), torch.autocast(**BF16):
        proj.weight.copy_(torch.randn(d, d_in, generator=g) / d_in**0.5)
        proj.bias.copy_(0.1 * torch.randn(d, generator=g))
        features = proj(x)
    assert features.dtype == torch.bfloat16
    return F.normalize(features.float(), dim=-1).to(torch.bfloat16)


def _sap_inputs(b=8, m=4, p=49):
    t_sub, v_loc = _bf16_features(b, m, seed=0), _bf16_features(b, p, seed=1)
    mask = torch.ones(b, m, dtype=torch.bool)
    mask[::3, 2:] = False  # some samples have fewer sentences
    return t_sub, v_loc, mask


def _rel(value, reference):
    return ((value.float() - reference).abs() / reference.abs()).item()


@pytest.mark.parametrize("top_k", [None, 8])
def test_sap_weights_under_bf16_autocast_match_fp32(top_k):
    t_sub, v_loc, _ = _sap_inputs()
    reference = patch_weights(t_sub.float(), v_loc.float(), tau_s=0.07, top_k=top_k)
    with torch.autocast(**BF16):
        weights = patch_weights(t_sub, v_loc, tau_s=0.07, top_k=top_k)
    assert (weights.float() - reference).abs().max().item() <= 1e-3
    assert weights.dtype == torch.float32


@pytest.mark.parametrize("top_k", [None, 8])
def test_sap_loss_under_bf16_autocast_within_1_percent(top_k):
    t_sub, v_loc, mask = _sap_inputs()
    reference = subcaption_patch_loss(t_sub.float(), mask, v_loc.float(), SCALE, 0.07, top_k)
    with torch.autocast(**BF16):
        loss = subcaption_patch_loss(t_sub, mask, v_loc, SCALE, 0.07, top_k)
    assert _rel(loss, reference) <= 0.01


def test_wpr_under_bf16_autocast_matches_fp32():
    v_cal, t_cal = _bf16_features(8, 16, seed=2), _bf16_features(8, 12, seed=3)
    reference = word_patch_reconstruction_loss(v_cal.float(), t_cal.float())
    ref_v_rec, ref_t_rec = reconstruct(v_cal.float(), t_cal.float(), tau_r=0.07)
    with torch.autocast(**BF16):
        loss = word_patch_reconstruction_loss(v_cal, t_cal)
        v_rec, t_rec = reconstruct(v_cal, t_cal, tau_r=0.07)
    for term in ("total", "image", "text"):
        assert _rel(getattr(loss, term), getattr(reference, term)) <= 0.01, term
    # The loss terms are insensitive to bf16 attention (~0.2%); the reconstructions are not (~7e-3).
    assert (v_rec.float() - ref_v_rec).abs().max().item() <= 1e-3
    assert (t_rec.float() - ref_t_rec).abs().max().item() <= 1e-3
    assert v_rec.dtype == t_rec.dtype == torch.float32


def test_infonce_under_bf16_autocast_within_1_percent():
    image, text = _bf16_features(32, seed=4), _bf16_features(32, seed=5)
    reference = infonce(image.float(), text.float(), SCALE)
    with torch.autocast(**BF16):
        loss = infonce(image, text, SCALE)
    assert _rel(loss, reference) <= 0.01


def test_gradients_reach_bf16_inputs_in_their_dtype():
    t_sub, v_loc, mask = _sap_inputs()
    v_cal, t_cal = _bf16_features(8, 16, seed=2), _bf16_features(8, 12, seed=3)
    image, text = _bf16_features(8, seed=4), _bf16_features(8, seed=5)
    leaves = [x.clone().requires_grad_() for x in (t_sub, v_loc, v_cal, t_cal, image, text)]
    t_sub, v_loc, v_cal, t_cal, image, text = leaves
    with torch.autocast(**BF16):
        loss = (
            subcaption_patch_loss(t_sub, mask, v_loc, SCALE, 0.07, top_k=8)
            + word_patch_reconstruction_loss(v_cal, t_cal).total
            + infonce(image, text, SCALE)
        )
    loss.backward()
    for leaf in leaves:
        assert leaf.grad is not None and leaf.grad.dtype == torch.bfloat16
        assert torch.isfinite(leaf.grad).all() and leaf.grad.abs().sum() > 0
