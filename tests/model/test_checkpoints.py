import argparse

import open_clip
import pytest
import torch
from safetensors.torch import save_file

from mulclip_pl.errors import PretrainedWeightsError, UnsafePickleError
from mulclip_pl.export.open_clip_dir import export_open_clip_dir
from mulclip_pl.model.backbone import ClipBackbone
from mulclip_pl.model.build import build_clip
from mulclip_pl.model.plain import plain_open_clip_state
from mulclip_pl.weights.checkpoints import read_lightning_checkpoint
from tests.conftest import TEST_MODEL
from tests.helpers.pickles import OpenPayload


@pytest.fixture(scope="module")
def source():
    torch.manual_seed(1)
    return open_clip.create_model(TEST_MODEL).eval()


def _same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("fmt", ["pt", "pt_wrapped", "safetensors"])  # OpenAI's TorchScript: test_openai_quickgelu.py
def test_loads_local_files_and_stretches(tmp_path, source, fmt, tokenizer):
    path = tmp_path / f"w.{'safetensors' if fmt == 'safetensors' else 'pt'}"
    state = source.state_dict()
    if fmt == "pt":
        torch.save(state, path)
    elif fmt == "pt_wrapped":
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    clip = build_clip(TEST_MODEL, pretrained=str(path)).eval()
    assert torch.equal(clip.positional_embedding[:20], source.positional_embedding[:20])
    assert torch.equal(clip.visual.proj, source.visual.proj)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ClipBackbone(clip).encode_image(images).v_cls, source.encode_image(images))


def test_exported_248_checkpoint_round_trips(tmp_path):
    torch.manual_seed(2)
    clip = build_clip(TEST_MODEL)
    torch.save(plain_open_clip_state(clip), tmp_path / "long.pt")  # what `mulclip-pl export --format pt` writes
    again = build_clip(TEST_MODEL, pretrained=str(tmp_path / "long.pt"))
    assert _same_weights(clip, again)


def test_export_dir_loads_in_plain_open_clip(tmp_path, tokenizer):
    torch.manual_seed(3)
    clip = build_clip(TEST_MODEL).eval()
    out = export_open_clip_dir(clip, TEST_MODEL, tmp_path / "export")
    loaded, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{out}")
    loaded.eval()
    tokens = tokenizer(["a long caption " * 30])
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_text(tokens), clip.encode_text(tokens))
    assert loaded.context_length == 248


def test_missing_file_error_names_the_file(tmp_path):
    with pytest.raises(PretrainedWeightsError, match="not found: .*nope.pt"):
        build_clip(TEST_MODEL, pretrained=str(tmp_path / "nope.pt"))


def test_corrupt_file_error(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(PretrainedWeightsError, match="could not read weights file .*not a torch checkpoint") as err:
        build_clip(TEST_MODEL, pretrained=str(bad))
    assert "weights_only" not in str(err.value)  # not torch's advice to load it unsafely


@pytest.mark.parametrize("reader", ["pretrained", "lightning"])
def test_crafted_pickle_is_refused_without_running(tmp_path, source, reader):
    marker, path = tmp_path / "CODE_RAN", tmp_path / "crafted.pt"
    torch.save({"state_dict": source.state_dict(), "x": OpenPayload(marker)}, path)
    with pytest.raises(UnsafePickleError, match=r"pickled io.open object.*--model.trust_pickle true.*safetensors"):
        if reader == "pretrained":
            build_clip(TEST_MODEL, pretrained=str(path))
        else:
            read_lightning_checkpoint(path)
    assert not marker.exists()


def test_trust_pickle_reads_an_old_style_pickled_file(tmp_path, source):
    path = tmp_path / "old.pt"
    torch.save({"state_dict": source.state_dict(), "args": argparse.Namespace(lr=1e-3), "epoch": 32}, path)
    with pytest.raises(UnsafePickleError, match="argparse.Namespace"):
        build_clip(TEST_MODEL, pretrained=str(path))
    clip = build_clip(TEST_MODEL, pretrained=str(path), trust_pickle=True)
    assert torch.equal(clip.visual.proj, source.visual.proj)


def test_architecture_mismatch_names_keys(tmp_path):
    torch.save(open_clip.create_model("mulclip-tiny").state_dict(), tmp_path / "tiny.pt")
    with pytest.raises(PretrainedWeightsError, match=r"do not match architecture mulclip-test.*shape mismatches.*ln_final.bias: file \(128,\) vs model \(64,\)"):
        build_clip(TEST_MODEL, pretrained=str(tmp_path / "tiny.pt"))


def test_unknown_model_name():
    with pytest.raises(ValueError, match="unknown model_name 'ViT-Q-99'"):
        build_clip("ViT-Q-99")
