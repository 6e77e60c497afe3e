"""The documentation stays inside the repository: every reader is described in docs/DATA.md, and no
file points readers to a place they do not have."""

import re
import subprocess
from pathlib import Path

import pytest

import mulclip_pl.data

REPO = Path(__file__).resolve().parents[1]
OUTSIDE = ("../" + "shared", "shared" + "/docs", "DATA" + "_FORMATS")  # split: this file does not match itself


def repository_files() -> list[Path]:
    try:
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                                capture_output=True, text=True, check=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [REPO / name for name in listed if name and (REPO / name).is_file()]


def test_no_file_points_outside_the_repository():
    offenders = []
    for path in repository_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:  # images, archives
            continue
        offenders += [f"{path.relative_to(REPO)}: {word}" for word in OUTSIDE if word in text]
    assert not offenders


def test_data_md_describes_every_reader():
    text = (REPO / "docs" / "DATA.md").read_text(encoding="utf-8")
    headings = {name for line in re.findall(r"^### (.+)$", text, re.M) for name in re.findall(r"`(\w+)`", line)}
    readers = {name for name in mulclip_pl.data.__all__ if name != "BaseDataModule"}
    assert readers <= headings, f"not in docs/DATA.md: {sorted(readers - headings)}"
    assert "docs/DATA.md" in mulclip_pl.data.corpora.__doc__
