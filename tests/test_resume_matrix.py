"""Issue #47: a mid-run checkpoint written under one process, DDP or FSDP (2 gloo processes each) resumes under
each of the three and ends as the uninterrupted run of its new strategy; one process resumes on two and two on
one when the global batch is kept. What cannot resume is refused in one line before anything loads.

The fits are shared with ``tests/test_fsdp.py`` (``tests/helpers/strategy_runs.py``). Bit-exact where the
arithmetic allows: a resume under the strategy that wrote it ends equal to the bit, weights and moments.
Between DDP and FSDP the weights are equal to the bit too, but the fused AdamW kernel rounds a moment
differently on a whole tensor and on FSDP's flat shard, so there the moments match within fp32 noise.
Between one process and two, the summation order of the batch differs, and AdamW turns the rounding noise of
a gradient that is 0 in exact arithmetic (the attention key bias: softmax ignores it) into a step of up to
``lr``: the two uninterrupted runs differ by up to 1.9e-4 there. A resume across them must stay within twice
that gap of its target, tensor by tensor, and within the FSDP-vs-DDP tolerance where there is none.
"""

from itertools import product

import pytest
import torch

from mulclip_pl.training.optimizer_state import NAMES, keying
from tests.helpers.strategy_runs import MID_RUN, PROCESSES, REFUSED, STEPS, STRATEGIES


def _last(root, run: str) -> dict:
    return torch.load(root / run / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True)


def _assert_same(a, b, where: str = "", exact: bool = True) -> None:
    """Equal to the bit (or within fp32 noise): tensors, and dicts / lists of them (optimizer states)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}/{key}", exact)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}/{i}", exact)
    elif torch.is_tensor(a) and exact:
        assert torch.equal(a, b), where
    elif torch.is_tensor(a):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-12, msg=where)
    else:
        assert a == b, where


@pytest.mark.parametrize("source, target", list(product(STRATEGIES, STRATEGIES)))
def test_a_mid_run_checkpoint_resumes_under_every_strategy(strategy_runs, source, target):
    root, results = strategy_runs
    run = results[f"{source}_to_{target}"]
    assert run["code"] == [0] * PROCESSES[target], run["stderr"][-3000:]
    resumed, straight = _last(root, f"{source}_to_{target}"), _last(root, target)
    assert resumed["global_step"] == straight["global_step"] == STEPS
    assert keying(resumed["optimizer_states"][0]) == keying(straight["optimizer_states"][0]) == NAMES
    if PROCESSES[source] == PROCESSES[target]:
        _assert_same(resumed["state_dict"], straight["state_dict"], "state_dict")
        _assert_same(resumed["optimizer_states"], straight["optimizer_states"], "optimizer", exact=source == target)
        return
    own = _last(root, source)["state_dict"]  # the source strategy's uninterrupted run
    for name, value in straight["state_dict"].items():
        gap = (own[name] - value).abs().max().item()
        torch.testing.assert_close(resumed["state_dict"][name], value, rtol=1e-4, atol=1e-6 + 2 * gap, msg=name)
    start = torch.load(root / source / "ckpt" / f"epoch=0-step={MID_RUN}.ckpt", weights_only=True)["state_dict"]
    assert not torch.equal(start["backbone.clip.visual.proj"], resumed["state_dict"]["backbone.clip.visual.proj"])


@pytest.mark.parametrize("name", REFUSED)
def test_a_resume_of_another_model_is_refused_in_one_line_before_anything_loads(strategy_runs, name):
    root, results = strategy_runs
    strategy, run, change = REFUSED[name]
    stderr = results[name]["stderr"]
    assert results[name]["code"] == [1] * PROCESSES[strategy] and "Traceback" not in stderr, stderr[-3000:]
    assert "Restoring states" not in stderr and not (root / name / "ckpt").exists()
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"mulclip-pl: error: --ckpt_path {root / run / 'ckpt' / 'last.ckpt'} holds another model: "
                           f"{change[0][2:]} {change[1]} (checkpoint: ")
    assert "--model.init_from" in last
