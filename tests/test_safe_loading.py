"""No file a user is handed can run code: every CLI entry point that reads one refuses a crafted pickle
with one line naming the opt-in and the safer conversion; with the opt-in, old pickled files still load."""

import argparse
import shutil
from pathlib import Path

import pytest
import torch

from mulclip_pl.cli import main
from mulclip_pl.data.synthlong.generator import generate
from mulclip_pl.model.build import build_clip
from mulclip_pl.model.plain import plain_open_clip_state
from mulclip_pl.module import MulCLIP
from tests.conftest import TEST_MODEL
from tests.helpers.pickles import PAYLOADS, OpenPayload, ShellPayload




@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("safe")
    synth = generate(root / "synth", image_size=32, sizes={"train": 4})
    main(["fit", *_fit_args(root / "run", synth), "--trainer.max_steps", "1"])
    trained = root / "run" / "ckpt" / "last.ckpt"
    checkpoint = torch.load(trained, weights_only=True)
    marker = root / "CODE_RAN"
    crafted, crafted_weights, old_style = root / "crafted.ckpt", root / "crafted.pt", root / "old.ckpt"
    torch.save({**checkpoint, "payload": OpenPayload(marker)}, crafted)
    torch.save({"state_dict": {}, "payload": OpenPayload(marker)}, crafted_weights)
    torch.save({**checkpoint, "payload": ShellPayload(marker)}, root / "crafted-shell.ckpt")
    torch.save({"state_dict": {}, "payload": ShellPayload(marker)}, root / "crafted-shell.pt")
    torch.save({**checkpoint, "args": argparse.Namespace(lr=1e-3)}, old_style)  # legit, but needs full unpickling
    return {"synth": synth, "trained": trained, "crafted": crafted, "crafted_weights": crafted_weights,
            "old_style": old_style, "marker": marker, "image": next((synth / "images").iterdir())}


def _fit_args(root, synth):
    return ["--model.model_name", TEST_MODEL, "--data", "GenericCaptions", "--data.train_file", str(synth / "train.jsonl"),
            "--data.batch_size", "2", "--data.num_workers", "0", "--trainer.accelerator", "cpu",
            "--trainer.logger", "false", "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(root),
            "--checkpoint.dirpath", str(root / "ckpt")]


def _entry_point(name, files, tmp_path, path):
    fit = ["fit", *_fit_args(tmp_path, files["synth"]), "--trainer.max_steps", "2"]
    return {
        "pretrained": [*fit, "--model.pretrained", str(path)],
        "init_from": [*fit, "--model.init_from", str(path)],
        "ckpt_path": [*fit, "--ckpt_path", str(path)],
        "ckpt_path_last": [*fit, "--ckpt_path", "last"],  # resolved by Lightning, read by SafeCheckpointIO
        "export": ["export", "--ckpt", str(path), "--out", str(tmp_path / "w.safetensors")],
        "explain": ["explain", "--ckpt", str(path), "--image", str(files["image"]), "--caption", "A red square.",
                    "--out", str(tmp_path / "map.png")],
    }[name]


@pytest.mark.parametrize("style", PAYLOADS)
@pytest.mark.parametrize("entry", ["pretrained", "init_from", "ckpt_path", "ckpt_path_last", "export", "explain"])
def test_crafted_pickle_is_refused_at_every_entry_point(entry, style, files, tmp_path):
    path = files["crafted_weights" if entry == "pretrained" else "crafted"]
    if style == "shell":
        path = path.with_stem(f"{path.stem}-shell")
    if entry == "ckpt_path_last":
        (tmp_path / "ckpt").mkdir()
        path = Path(shutil.copy(path, tmp_path / "ckpt" / "last.ckpt"))
    with pytest.raises(SystemExit) as stop:
        main(_entry_point(entry, files, tmp_path, path))
    message = str(stop.value.code)
    assert message.startswith(f"mulclip-pl: error: refused to load {path}: it holds a pickled {PAYLOADS[style][1]} object")
    assert "--model.trust_pickle true" in message and "--trust_pickle true" in message and "\n" not in message
    hint = "save_file" if entry == "pretrained" else "mulclip-pl export --ckpt"
    assert hint in message and "safetensors" in message and "weights_only" not in message
    assert not files["marker"].exists()  # nothing in the file ran


def test_checkpoint_hyper_parameters_cannot_switch_trust_on(files, tmp_path):
    """Lightning applies --ckpt_path's saved hyper-parameters to the run: a clean-looking checkpoint
    must not turn on trust_pickle for the files it names."""
    checkpoint = torch.load(files["trained"], weights_only=True)
    checkpoint["hyper_parameters"].update(trust_pickle=True, pretrained=str(files["crafted_weights"]))
    torch.save(checkpoint, tmp_path / "flip.ckpt")
    main(_entry_point("ckpt_path", files, tmp_path, tmp_path / "flip.ckpt"))  # the weights come from the checkpoint:
    assert not files["marker"].exists()  # the file it names is never read, trusted or not


def test_trusted_old_style_checkpoint_resumes_and_exports(files, tmp_path):
    old, trained = files["old_style"], MulCLIP.load_trained(files["trained"])
    with pytest.raises(SystemExit, match="refused to load"):  # a legit pickled checkpoint still needs the opt-in
        main(_entry_point("ckpt_path", files, tmp_path, old))
    main([*_entry_point("ckpt_path", files, tmp_path, old), "--model.trust_pickle", "true"])
    assert torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)["global_step"] == 2  # resumed at step 1
    main(["export", "--ckpt", str(old), "--trust_pickle", "true", "--format", "safetensors", "--out", str(tmp_path / "w")])
    converted = build_clip(TEST_MODEL, pretrained=str(tmp_path / "w.safetensors"))  # the safer file: no opt-in needed
    started = MulCLIP(model_name=TEST_MODEL, init_from=str(old), trust_pickle=True)
    for name, value in plain_open_clip_state(trained.backbone.clip).items():  # compared as one merged position table
        assert torch.equal(plain_open_clip_state(converted)[name], value), name
        assert torch.equal(plain_open_clip_state(started.backbone.clip)[name], value), name
    main([*_entry_point("explain", files, tmp_path, old), "--trust_pickle", "true"])
    assert (tmp_path / "map.png").stat().st_size > 0


def test_export_format_flag(files, tmp_path):
    main(["export", "--ckpt", str(files["trained"]), "--format", "pt", "--out", str(tmp_path / "model")])
    assert (tmp_path / "model.pt").is_file()
    with pytest.raises(SystemExit, match="names a .pt file but --format is safetensors"):
        main(["export", "--ckpt", str(files["trained"]), "--format", "safetensors", "--out", str(tmp_path / "x.pt")])


@pytest.mark.parametrize("entry", ["ckpt_path", "ckpt_path_last"])
def test_a_corrupt_ckpt_path_is_one_line(entry, files, tmp_path):
    path = tmp_path / "ckpt" / "last.ckpt"
    path.parent.mkdir()
    path.write_bytes(b"garbage, not a checkpoint")
    with pytest.raises(SystemExit) as stop:
        main(_entry_point(entry, files, tmp_path, path))
    message = str(stop.value.code)
    assert message.startswith("mulclip-pl: error: could not read ") and str(path) in message
    assert "not a torch checkpoint" in message and "\n" not in message and "weights_only" not in message
