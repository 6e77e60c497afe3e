import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss

from mulclip_pl.objectives.contrastive import grouped_infonce, infonce


def _pairs(n=8, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g), dim=-1), F.normalize(torch.randn(n, d, generator=g), dim=-1)


def test_matches_open_clip_cliploss():
    a, b = _pairs()
    scale = torch.tensor(14.0)
    torch.testing.assert_close(infonce(a, b, scale), ClipLoss()(a, b, scale))


def test_permuting_the_batch_changes_nothing():
    a, b = _pairs()
    perm = torch.randperm(8)
    torch.testing.assert_close(infonce(a, b, torch.tensor(10.0)), infonce(a[perm], b[perm], torch.tensor(10.0)))


def test_invalid_rows_are_neither_anchors_nor_negatives():
    a, b = _pairs(8)
    valid = torch.tensor([True, True, False, True, False, True, True, True])
    a_noise = a.clone().requires_grad_()
    masked = grouped_infonce(a_noise[None], b[None], torch.tensor(10.0), valid[None])
    subset = infonce(a[valid], b[valid], torch.tensor(10.0))
    torch.testing.assert_close(masked, subset)
    masked.backward()
    assert a_noise.grad[~valid].abs().max() == 0
    assert torch.isfinite(a_noise.grad).all()


def test_groups_are_averaged_and_empty_groups_skipped():
    a, b = _pairs(6)
    valid = torch.tensor([[True] * 6, [True, True, True, False, False, False], [False] * 6])
    stacked_a, stacked_b = a[None].expand(3, -1, -1), b[None].expand(3, -1, -1)
    loss = grouped_infonce(stacked_a, stacked_b, torch.tensor(10.0), valid)
    expected = (infonce(a, b, torch.tensor(10.0)) + infonce(a[:3], b[:3], torch.tensor(10.0))) / 2
    torch.testing.assert_close(loss, expected)


def test_aligned_pairs_have_low_loss():
    a, _ = _pairs(8, d=64)
    assert infonce(a, a, torch.tensor(100.0)) < 0.1 < infonce(*_pairs(8, d=64), torch.tensor(100.0))
