"""The README's commands name checkpoints where the shipped configs really write them."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_every_readme_ckpt_path_is_where_a_shipped_config_writes_last_ckpt():
    written = set()
    for config in ROOT.glob("configs/**/*.yaml"):
        dirpath = ((yaml.safe_load(config.read_text()) or {}).get("checkpoint") or {}).get("dirpath")
        if dirpath:
            written.add(f"{dirpath}/last.ckpt")
    named = set(re.findall(r"--ckpt_path (runs/\S+)", (ROOT / "README.md").read_text()))
    assert named and named <= written, named - written
