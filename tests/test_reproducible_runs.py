"""A run repeats bit for bit on one machine: ``make fingerprint``'s path (stage 1 and stage 2 fits
from the shipped configs, each over an epoch boundary with validation and 2 loader workers, a test
call, an export) run twice in fresh processes gives equal tensors everywhere.

The two processes get different ``PYTHONHASHSEED``s, so an order taken from a ``set`` or ``dict`` of
strings (which Python randomises per process) shows up here instead of between two users' runs.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _fingerprint(out: Path, hash_seed: str) -> dict:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    subprocess.run([sys.executable, "benchmarks/fingerprint.py", "--model", "mulclip-test", "--out", str(out)],
                   cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return json.loads((out / "fingerprint.json").read_text())


def _tensors(obj, prefix=""):
    """Every tensor in a (nested) checkpoint, by path: weights, optimizer moments, RNG states."""
    if torch.is_tensor(obj):
        yield prefix, obj
    elif isinstance(obj, dict):
        for key in sorted(obj, key=str):
            yield from _tensors(obj[key], f"{prefix}/{key}")
    elif isinstance(obj, (list, tuple)):
        for i, item in enumerate(obj):
            yield from _tensors(item, f"{prefix}/{i}")


def test_two_runs_give_equal_tensors_metrics_and_digest(tmp_path):
    first, second = _fingerprint(tmp_path / "a", "1"), _fingerprint(tmp_path / "b", "2")
    for stage in ("stage1", "stage2"):
        a, b = (torch.load(run / stage / "last.ckpt", map_location="cpu", weights_only=False)
                for run in (tmp_path / "a", tmp_path / "b"))
        tensors_a, tensors_b = dict(_tensors(a)), dict(_tensors(b))
        assert tensors_a.keys() == tensors_b.keys() and len(tensors_a) > 50
        unequal = [name for name in tensors_a if not torch.equal(tensors_a[name], tensors_b[name])]
        assert not unequal, f"{stage}: {len(unequal)} tensors differ, e.g. {unequal[:5]}"
    assert first == second  # losses and learning rate per step, validation and test metrics, the export
