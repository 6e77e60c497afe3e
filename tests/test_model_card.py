"""Every export writes a model card: base weights, training data and config, results, licence, and
a loading snippet that runs."""

import os
import re

import pytest
import torch
from safetensors.torch import save_file

from mulclip_pl.cli import main
from mulclip_pl.eval.report import write_results
from mulclip_pl.model.build import build_clip
from mulclip_pl.model.plain import plain_open_clip_state
from mulclip_pl.tokenizer import LongTextTokenizer
from tests.conftest import TEST_MODEL
from tests.trained_fixtures import CAPTIONS, write_checkpoint

CONFIG = """seed_everything: 3
trainer:
  max_epochs: 10
  precision: bf16-mixed
data:
  class_path: mulclip_pl.data.DOCCI
  init_args:
    root: /data/docci
    batch_size: 128
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """RUN/checkpoints/last.ckpt as `mulclip-pl fit` lays it out, with RUN/config.yaml and RUN/results.md."""
    root = tmp_path_factory.mktemp("card")
    base = root / "base.safetensors"
    save_file(plain_open_clip_state(build_clip(TEST_MODEL, context_length=77)), str(base))
    ckpt = write_checkpoint(root / "run" / "checkpoints" / "last.ckpt", pretrained=str(base))
    (root / "run" / "config.yaml").write_text(CONFIG)
    write_results({"docci": {"i2t_R@1": 81.25, "t2i_R@1": 80.5}}, root / "run", "mulclip-docci")
    return root, ckpt, base


def _snippet(card: str) -> str:
    return re.search(r"```python\n(.*?)```", card, re.S).group(1)


@pytest.mark.parametrize("fmt, out, card_name", [("open_clip", "export", "export/README.md"),
                                                 ("pt", "model.pt", "model.README.md")])
def test_card_describes_the_model_and_its_snippet_loads_it(run, fmt, out, card_name, tmp_path, monkeypatch):
    root, ckpt, base = run
    main(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / out), "--format", fmt])
    card = (tmp_path / card_name).read_text()
    assert f"`{base}` (CLIP weights), architecture `{TEST_MODEL}`" in card
    assert "data: `DOCCI` (root=/data/docci, batch_size=128)" in card
    assert "trainer: max_epochs=10, precision=bf16-mixed, seed=3" in card and "preset=global_only" in card
    assert "| mulclip-docci | docci | 81.25 | 80.50 |" in card
    assert "## Licence" in card and "MIT" in card
    monkeypatch.chdir(tmp_path)  # the snippet names the export relative to its folder
    scope = {}
    exec(_snippet(card), scope)
    assert scope["model"].positional_embedding.shape[0] == 248
    long = [CAPTIONS[2]]  # past CLIP's 77 tokens: cut there, or padded to another width, the ids would differ
    assert torch.equal(scope["tokenizer"](long), LongTextTokenizer()(long)) and os.path.exists(out)


def test_card_takes_the_results_file_it_is_given(run, tmp_path):
    root, ckpt, _ = run
    other = write_results({"urban1k": {"i2t_R@1": 12.5}}, tmp_path / "test_run", "elsewhere")[0]  # results.json
    main(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "export"), "--results", str(other)])
    card = (tmp_path / "export" / "README.md").read_text()
    assert "| elsewhere | urban1k | 12.50 |" in card and "mulclip-docci" not in card


def test_card_without_config_or_results_says_so(tmp_path):
    ckpt = write_checkpoint(tmp_path / "model.ckpt")
    main(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "export")])
    card = (tmp_path / "export" / "README.md").read_text()
    assert "none recorded" in card and "not recorded (no config.yaml" in card and "No results table" in card
