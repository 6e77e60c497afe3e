"""``mulclip-pl`` in a fresh process, as a user runs it (multi-process fits: Lightning launches the ranks)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_cli(args: list[str], timeout: int = 600, **env: str) -> None:
    """``python -m mulclip_pl.cli ARGS`` from the repository root (tests/ importable for test-only classes),
    one thread per process; fails with the tail of its output."""
    environment = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}", "OMP_NUM_THREADS": "1", **env}
    environment.pop("MASTER_PORT", None)
    done = subprocess.run([sys.executable, "-m", "mulclip_pl.cli", *args], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
