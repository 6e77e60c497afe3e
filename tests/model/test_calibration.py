import torch

from mulclip_pl.model.calibration import TokenCalibration


def test_shortens_normalises_and_ignores_masked_tokens():
    torch.manual_seed(0)
    calib = TokenCalibration(dim=16, num_out=4)
    x = torch.randn(2, 10, 16)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 6:] = False
    out = calib(x, mask)
    assert out.shape == (2, 4, 16)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(2, 4))
    weights = calib.assignment(x, mask)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4))
    assert weights[1, :, 6:].abs().max() == 0
    x_changed = x.clone()
    x_changed[1, 6:] = 1e3  # masked tokens may hold anything
    torch.testing.assert_close(calib(x_changed, mask)[1], out[1])


def test_fully_masked_row_stays_finite():
    calib = TokenCalibration(dim=8, num_out=2)
    out = calib(torch.randn(1, 5, 8), torch.zeros(1, 5, dtype=torch.bool))
    assert torch.isfinite(out).all()
