import json

import pytest
import torch

from mulclip_pl.cli import main
from mulclip_pl.data.synthlong.generator import generate
from mulclip_pl.module import MulCLIP
from tests.conftest import TEST_MODEL
from tests.data import fixtures


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synth"), image_size=32, sizes={"train": 16, "val": 8, "test": 8})


def _common(root):
    return ["--model.model_name", TEST_MODEL, "--trainer.accelerator", "cpu", "--trainer.default_root_dir", str(root),
            "--trainer.enable_progress_bar", "false", "--trainer.logger", "false"]


def test_fit_then_test_on_several_sets_writes_tables(tmp_path, synth):
    data = ["--data", "GenericCaptions", "--data.train_file", str(synth / "train.jsonl"),
            "--data.val_file", str(synth / "val.jsonl"), "--data.batch_size", "4", "--data.num_workers", "0"]
    main(["fit", *_common(tmp_path), *data, "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1"])
    ckpts = list(tmp_path.rglob("*.ckpt"))
    assert ckpts
    fixtures.write_cifar10(tmp_path / "cifar")
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"""
data:
  class_path: mulclip_pl.data.EvalSuite
  init_args:
    datasets:
      - class_path: mulclip_pl.data.GenericCaptions
        init_args: {{test_file: {synth / 'test.jsonl'}, num_workers: 0, name: synth}}
      - class_path: mulclip_pl.data.CIFAR10
        init_args: {{root: {tmp_path / 'cifar'}, num_workers: 0}}
""")
    main(["test", *_common(tmp_path), "--config", str(suite), "--ckpt_path", str(ckpts[0])])
    results = json.loads(next(tmp_path.rglob("results.json")).read_text())["results"]
    assert set(results) == {"synth", "cifar10"}
    assert 0 <= results["synth"]["t2i_R@1"] <= 100 and results["synth"]["i2t_R@10"] == 100.0  # 8 items: R@10 is certain
    assert "top1" in results["cifar10"]
    table = next(tmp_path.rglob("results.md")).read_text()
    assert "| synth |" in table and "| cifar10 |" in table


def test_unknown_config_key_fails_naming_it(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["fit", *_common(tmp_path), "--model.lamda_sub", "2"])
    assert "lamda_sub" in capsys.readouterr().err


def test_plain_open_clip_baseline_needs_no_heads(tmp_path, synth):
    main(["test", *_common(tmp_path), "--model.preset", "global_only", "--data", "GenericCaptions",
          "--data.test_file", str(synth / "test.jsonl"), "--data.num_workers", "0"])
    assert json.loads(next(tmp_path.rglob("results.json")).read_text())["results"]["generic"]


def test_help_lists_the_tool_subcommands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name in ("fit", "test", "export", "explain", "shrink-images", "report", "wise-ft"):
        assert name in out
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    assert "usage: mulclip-pl export" in capsys.readouterr().out


def test_model_options_have_help_text(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    out = capsys.readouterr().out
    assert "weight of subcaption-aggregated patch alignment" in out  # lambda_sub's own line
    assert "learning rate of the calibration heads" in out  # head_lr's


def test_shipped_config_placeholders_are_reported_at_once_without_traceback(capfd):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", "configs/docci.yaml"])
    err = capfd.readouterr().err
    assert exit_info.value.code == 2
    assert "model.pretrained: /path/to/ViT-B-16.pt" in err and "data.root: /path/to/docci" in err
    assert "Traceback" not in err


def test_a_missing_weights_file_is_one_line_naming_the_path(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *_common(tmp_path), "--model.pretrained", str(tmp_path / "nope.pt"), "--data", "GenericCaptions",
              "--data.train_file", str(tmp_path / "x.jsonl")])
    message = str(exit_info.value.code)
    assert message.startswith("mulclip-pl: error: pretrained weights file not found") and "nope.pt" in message


def test_testing_a_checkpoint_does_not_need_the_files_it_was_started_from(tmp_path, synth):
    data = ["--data", "GenericCaptions", "--data.train_file", str(synth / "train.jsonl"), "--data.test_file",
            str(synth / "test.jsonl"), "--data.batch_size", "4", "--data.num_workers", "0"]
    start = tmp_path / "start.pt"
    torch.save(MulCLIP(model_name=TEST_MODEL).backbone.clip.state_dict(), start)
    main(["fit", *_common(tmp_path), *data, "--model.pretrained", str(start), "--trainer.max_steps", "1",
          "--checkpoint.dirpath", str(tmp_path / "ckpt")])
    start.unlink()  # e.g. a colleague's checkpoint, tested without their copy of the base weights
    main(["test", *_common(tmp_path), *data, "--model.pretrained", str(start),
          "--ckpt_path", str(tmp_path / "ckpt" / "last.ckpt")])
    assert json.loads(next(tmp_path.rglob("results.json")).read_text())["results"]["generic"]
