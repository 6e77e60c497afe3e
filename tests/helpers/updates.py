"""Two fits of the same steps trained alike, judged on their weight updates and within fp32 noise.

Why updates and why this noise: AdamW divides each gradient by its running RMS, so an entry whose
true gradient is exactly 0 moves by its float noise scaled up to the learning rate. Two such entries
exist in MulCLIP: the key rows of each attention's ``in_proj_bias`` (a softmax ignores a shift of its
logits) and each calibration scorer's last bias (same reason). Two *eager* fits that differ only in
summation order (1 against 2 threads, 20 steps of tests/test_compile.py's fit) disagree by 1.0e-4 of
the update's norm over all weights, by up to 2.5% of a tensor's largest step on those entries, and
by at most 6e-5 of its update's norm on every other tensor. The bounds below are those, with room.
"""

from __future__ import annotations

import torch

NOISE_ALL = 1e-3  # |Δa - Δb| / |Δa| over all weights together
NOISE_TENSOR = 1e-3  # the same per tensor, entries with a zero true gradient left out


def zero_gradient_entries(name: str, value: torch.Tensor) -> torch.Tensor:
    """True where the entry's true gradient is 0 (see the module doc)."""
    mask = torch.zeros_like(value, dtype=torch.bool)
    if name.endswith("attn.in_proj_bias"):
        width = value.shape[0] // 3
        mask[width:2 * width] = True  # q, k, v: the keys
    elif name.endswith("calibration.scorer.2.bias"):
        mask[:] = True
    return mask


def update_gap(reference: dict, trained: dict, start: dict) -> tuple[float, str, float]:
    """How far ``trained``'s updates (from the state dict ``start``) are from ``reference``'s: |Δa - Δb| / |Δa|
    over all weights together, and the tensor where it is largest (entries with a zero true gradient left out)."""
    assert trained.keys() == reference.keys()
    floats = [name for name, value in reference.items() if value.is_floating_point()]
    steps = {name: reference[name].float() - start[name].float() for name in floats}
    gaps = {name: trained[name].float() - reference[name].float() for name in floats}
    flat_gap, flat_step = (torch.cat([d[n].flatten() for n in floats]) for d in (gaps, steps))
    total = flat_gap.norm() / flat_step.norm()
    per_tensor = {}
    for name in floats:
        keep = ~zero_gradient_entries(name, reference[name])
        step, gap = steps[name][keep].norm(), gaps[name][keep].norm()
        per_tensor[name] = float(gap / step) if step > 0 else float("inf") if gap > 0 else 0.0  # untrained: untouched
    worst = max(per_tensor, key=per_tensor.get)
    return float(total), worst, per_tensor[worst]


def assert_trained_alike(reference: dict, trained: dict, start: dict) -> None:
    """``trained``'s updates are ``reference``'s within fp32 noise (the module doc's bounds)."""
    total, name, worst = update_gap(reference, trained, start)
    assert total <= NOISE_ALL, f"updates differ by {total:.2e} of their norm"
    assert worst <= NOISE_TENSOR, f"{name}: update differs by {worst:.2e} of its norm"
