import torch
import torch.nn.functional as F

from mulclip_pl.objectives.sap import patch_weights, subcaption_patch_loss


def _inputs(b=4, m=3, p=9, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (F.normalize(torch.randn(b, m, d, generator=g), dim=-1),
            F.normalize(torch.randn(b, p, d, generator=g), dim=-1))


def test_weights_concentrate_on_matching_patches_and_respect_top_k():
    patches = torch.eye(9)[None, :, :8]  # patch p (< 8) points along axis p; patch 8 is zero
    sentence = F.normalize(patches[:, 2:3] + 0.1 * patches[:, 5:6], dim=-1)
    weights = patch_weights(sentence, patches, tau_s=0.05, top_k=2)
    assert weights[0, 0].argmax() == 2
    assert (weights[0, 0] > 0).sum() == 2
    torch.testing.assert_close(weights.sum(-1), torch.ones(1, 1))


def test_padding_sentences_change_nothing():
    t_sub, v_loc = _inputs()
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 1, 0]], dtype=torch.bool)
    scale = torch.tensor(20.0)
    t_a = t_sub.clone().requires_grad_()
    loss_a = subcaption_patch_loss(t_a, mask, v_loc, scale)
    garbage = torch.where(mask[..., None], t_sub, F.normalize(torch.randn_like(t_sub), dim=-1)).requires_grad_()
    loss_b = subcaption_patch_loss(garbage, mask, v_loc, scale)
    torch.testing.assert_close(loss_a, loss_b)
    loss_a.backward(), loss_b.backward()
    torch.testing.assert_close(t_a.grad, garbage.grad)
    assert garbage.grad[~mask].abs().max() == 0


def test_single_sentence_and_permutation():
    t_sub, v_loc = _inputs(m=1)
    mask = torch.ones(4, 1, dtype=torch.bool)
    loss = subcaption_patch_loss(t_sub, mask, v_loc, torch.tensor(10.0))
    perm = torch.tensor([2, 0, 3, 1])
    torch.testing.assert_close(loss, subcaption_patch_loss(t_sub[perm], mask, v_loc[perm], torch.tensor(10.0)))
    assert torch.isfinite(loss)
