import math

import torch
import torch.nn.functional as F

from mulclip_pl.objectives.wpr import reconstruct, word_patch_reconstruction_loss


def test_identical_token_sets_reconstruct_themselves():
    tokens = torch.eye(8)[None]  # orthogonal tokens: attention picks each token's twin
    v_rec, t_rec = reconstruct(tokens, tokens, tau_r=0.01)
    torch.testing.assert_close(v_rec, tokens, atol=1e-3, rtol=0)
    loss = word_patch_reconstruction_loss(tokens, tokens, tau_r=0.01, tau_w=0.07)
    assert loss.image < 0.01 and loss.text < 0.01


def test_unrelated_tokens_score_near_chance():
    g = torch.Generator().manual_seed(0)
    v = F.normalize(torch.randn(4, 6, 32, generator=g), dim=-1)
    t = F.normalize(torch.randn(4, 5, 32, generator=g), dim=-1)
    loss = word_patch_reconstruction_loss(v, t, tau_r=1.0, tau_w=1.0)
    assert abs(loss.image.item() - math.log(6)) < 0.3
    assert abs(loss.text.item() - math.log(5)) < 0.3


def test_samples_are_independent_and_gradients_reach_both_sides():
    g = torch.Generator().manual_seed(1)
    v = F.normalize(torch.randn(3, 6, 16, generator=g), dim=-1).requires_grad_()
    t = F.normalize(torch.randn(3, 5, 16, generator=g), dim=-1).requires_grad_()
    full = word_patch_reconstruction_loss(v, t).total
    per_sample = torch.stack([word_patch_reconstruction_loss(v[i:i + 1], t[i:i + 1]).total for i in range(3)]).mean()
    torch.testing.assert_close(full, per_sample)
    full.backward()
    assert v.grad.abs().sum() > 0 and t.grad.abs().sum() > 0
