"""``mulclip-pl export --format onnx``: onnxruntime on the two graphs gives the module's own embeddings.

The checkpoint has moved every trainable tensor, text positions 20-247 included, so a graph that
read the frozen position table (or pooled anywhere but at EOT) gives other numbers here.
"""

import re
import sys

import numpy as np
import pytest
import torch

from mulclip_pl.cli import main
from mulclip_pl.errors import ExportError
from mulclip_pl.export import export
from mulclip_pl.model.long_text import KEEP_POSITIONS, RES_KEY
from mulclip_pl.module import MulCLIP
from mulclip_pl.tokenizer import LongTextTokenizer
from tests.trained_fixtures import long_caption, write_checkpoint

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
from mulclip_pl.export.onnx import IMAGE_FILE, TEXT_FILE, OnnxTextEncoder  # noqa: E402

ATOL = 1e-4
# 10 tokens, 240 tokens (past CLIP's 77, deep into the trained rows), 37, 142, and one cut to 248 (EOT last).
TEXTS = [long_caption(0, 7), long_caption(1, 204), long_caption(2, 30), long_caption(3, 120), long_caption(4, 300)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx")
    ckpt = write_checkpoint(root / "model.ckpt")
    module = MulCLIP.load_trained(ckpt)
    state = module.backbone.clip.state_dict()
    moved = (state[RES_KEY] - state["positional_embedding"])[KEEP_POSITIONS:].norm(dim=1)
    assert moved.min() > 0.1, "the fixture must move every trained text position (rows >= 20) off the frozen table"
    main(["export", "--ckpt", str(ckpt), "--out", str(root / "onnx"), "--format", "onnx"])
    return module, root / "onnx"


def _session(folder, name):
    return ort.InferenceSession(str(folder / name), providers=["CPUExecutionProvider"])


def test_graphs_pass_the_checker_with_a_dynamic_batch_and_fixed_context(exported):
    _, folder = exported
    for name in (IMAGE_FILE, TEXT_FILE):
        onnx.checker.check_model(str(folder / name))
    text, image = _session(folder, TEXT_FILE).get_inputs()[0], _session(folder, IMAGE_FILE).get_inputs()[0]
    assert text.name == "text" and text.type == "tensor(int64)" and text.shape[1] == 248
    assert image.name == "image" and image.shape[1:] == [3, 32, 32]
    assert isinstance(text.shape[0], str) and isinstance(image.shape[0], str)  # symbolic batch
    assert {"README.md", "tokenizer.md", "preprocessor_config.json"} <= {p.name for p in folder.iterdir()}


@pytest.mark.parametrize("rows", [[0], [1], [0, 1, 2, 3, 4]], ids=["1x10tok", "1x240tok", "5mixed"])
def test_onnxruntime_gives_the_module_embeddings(exported, rows):
    module, folder = exported
    tokenizer = LongTextTokenizer()
    assert [tokenizer.count_tokens(TEXTS[i]) for i in (0, 1)] == [10, 240]
    ids = tokenizer([TEXTS[i] for i in rows])
    images = torch.randn(len(rows), 3, 32, 32, generator=torch.Generator().manual_seed(len(rows)))
    with torch.no_grad():
        text_ref = module.backbone.encode_text(ids).t_eot
        image_ref = module.backbone.encode_image(images).v_cls
    text = _session(folder, TEXT_FILE).run(None, {"text": ids.numpy()})[0]
    image = _session(folder, IMAGE_FILE).run(None, {"image": images.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(text), text_ref, atol=ATOL, rtol=0)
    torch.testing.assert_close(torch.from_numpy(image), image_ref, atol=ATOL, rtol=0)
    torch.testing.assert_close(torch.from_numpy(OnnxTextEncoder(folder / TEXT_FILE)(ids)), text_ref, atol=ATOL, rtol=0)


def test_helper_pads_short_ids_and_refuses_long_ones_in_one_line(exported):
    module, folder = exported
    encoder = OnnxTextEncoder(folder / TEXT_FILE)
    short = LongTextTokenizer(77)(TEXTS[:2])  # CLIP's own context: zero-padded to 248 by the helper
    with torch.no_grad():
        reference = module.backbone.encode_text(short).t_eot
    torch.testing.assert_close(torch.from_numpy(encoder(short)), reference, atol=ATOL, rtol=0)
    too_long = np.zeros((2, 249), dtype=np.int64)
    with pytest.raises(ValueError, match=re.escape("takes (N, 248): tokenize with context_length=248")) as info:
        encoder(too_long)
    assert "\n" not in str(info.value)
    with pytest.raises(Exception, match="249"):  # the graph's own refusal: a shape error from onnxruntime
        _session(folder, TEXT_FILE).run(None, {"text": too_long})


def test_card_snippet_runs_and_says_the_embeddings_are_unnormalised(exported, monkeypatch):
    module, folder = exported
    card = (folder / "README.md").read_text()
    assert "library_name: onnx" in card and "unnormalised embeddings" in card and "argmax of the ids" in card
    assert "open_clip.get_tokenizer('mulclip-test', context_length=248)" in (folder / "tokenizer.md").read_text()
    monkeypatch.chdir(folder.parent)
    scope = {}
    exec(re.search(r"```python\n(.*?)```", card, re.S).group(1), scope)
    with torch.no_grad():
        reference = module.backbone.encode_text(LongTextTokenizer()(["a long caption ..."])).t_eot
    torch.testing.assert_close(torch.from_numpy(scope["text"]), reference, atol=ATOL, rtol=0)
    assert scope["image"].shape == (1, 32)


def test_missing_onnx_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    ckpt = write_checkpoint(tmp_path / "model.ckpt")
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import onnxscript now raises ImportError
    with pytest.raises(ExportError, match=re.escape("pip install 'mulclip-pl[onnx]'")) as info:
        export(ckpt=str(ckpt), out=str(tmp_path / "onnx"), format="onnx")
    assert "\n" not in str(info.value)
    with pytest.raises(ExportError, match="writes a folder"):
        export(ckpt=str(ckpt), out=str(tmp_path / "model.pt"), format="onnx")
