"""The demo's path, as a user runs it: fit stage 1, fit stage 2 from it (init_from), test, report."""

import json

import pytest
import torch

from mulclip_pl.cli import main
from mulclip_pl.data.synthlong import generator as synthlong
from mulclip_pl.model.long_text import stretch_positional_embedding
from mulclip_pl.module import MulCLIP
from tests.conftest import TEST_MODEL


@pytest.fixture
def small_synthlong(monkeypatch):
    monkeypatch.setattr(synthlong, "SPLITS", {"train": 16, "val": 8, "test": 12})


def _overrides(tmp_path, stage):
    return ["--model.model_name", TEST_MODEL, "--data.init_args.root", str(tmp_path / "synth"),
            "--data.init_args.image_px", "32", "--data.init_args.num_workers", "0",
            "--data.init_args.batch_size", "4", "--trainer.enable_progress_bar", "false",
            "--trainer.default_root_dir", str(tmp_path / stage), "--checkpoint.dirpath", str(tmp_path / stage),
            "--trainer.logger.init_args.save_dir", str(tmp_path / "tb")]


def test_two_stage_demo_runs_through_the_cli_and_scores_hard_negatives(tmp_path, small_synthlong):
    main(["fit", "--config", "configs/synthlong/stage1.yaml", *_overrides(tmp_path, "stage1"), "--trainer.max_epochs", "1"])
    stage1 = tmp_path / "stage1" / "last.ckpt"
    main(["fit", "--config", "configs/synthlong/stage2.yaml", *_overrides(tmp_path, "stage2"),
          "--model.init_from", str(stage1), "--trainer.max_epochs", "2"])
    for stage in ("stage1", "stage2"):
        mixed = ["--data.init_args.mixed_negatives", "true"] if stage == "stage2" else []  # its val leaves them out
        main(["test", "--config", f"configs/synthlong/{stage}.yaml", *_overrides(tmp_path, stage), *mixed,
              "--ckpt_path", str(tmp_path / stage / "last.ckpt"), "--run_name", stage, "--trainer.logger", "false",
              "--trainer.default_root_dir", str(tmp_path / "test" / stage)])
    scored = json.loads((tmp_path / "test" / "stage2" / "results.json").read_text())
    assert scored["model"] == "stage2"
    results = scored["results"]
    assert set(results["synthlong"]) >= {"i2t_R@1", "t2i_R@1", "hard_negative_acc"}
    kinds = [f"synthlong_{k}" for k in ("colour", "shape", "size", "binding", "position", "count", "absent",
                                        "top1_of_2", "top1_of_6", "top1_of_11")]
    assert all(list(results[name]) == ["hard_negative_acc"] for name in kinds)  # no repeated R@K rows
    # 12 test images: each accuracy is a multiple of 100/12, and more negatives can only make top-1 harder
    assert all(abs(results[name]["hard_negative_acc"] * 12 / 100 - round(results[name]["hard_negative_acc"] * 12 / 100))
               < 1e-4 for name in kinds)
    assert (results["synthlong_top1_of_2"]["hard_negative_acc"] >= results["synthlong_top1_of_6"]["hard_negative_acc"]
            >= results["synthlong_top1_of_11"]["hard_negative_acc"])
    main(["report", str(tmp_path / "test"), "--out", str(tmp_path / "results.md")])
    table = (tmp_path / "results.md").read_text()
    # stage 1's own config scores its alt-text test split; stage 2's the long captions
    assert "| stage1 | web_synthlong | 1 |" in table and "| stage2 | synthlong | 1 |" in table
    assert (tmp_path / "tb" / "tensorboard" / "stage2").is_dir()  # logged where the config says


def test_init_from_starts_from_the_stretched_towers_of_a_77_position_checkpoint(tmp_path, small_synthlong):
    main(["fit", "--config", "configs/synthlong/stage1.yaml", *_overrides(tmp_path, "stage1"), "--trainer.max_steps", "2"])
    stage1 = MulCLIP.load_trained(tmp_path / "stage1" / "last.ckpt")
    assert stage1.backbone.context_length == 77
    stage2 = MulCLIP(model_name=TEST_MODEL, init_from=str(tmp_path / "stage1" / "last.ckpt"))
    assert stage2.backbone.context_length == 248
    torch.testing.assert_close(stage2.backbone.clip.positional_embedding,
                               stretch_positional_embedding(stage1.backbone.clip.positional_embedding))
    torch.testing.assert_close(stage2.backbone.clip.visual.conv1.weight, stage1.backbone.clip.visual.conv1.weight)


def test_init_from_takes_calibration_heads_of_a_mulclip_checkpoint(tmp_path):
    torch.manual_seed(0)
    trained = MulCLIP(model_name=TEST_MODEL)
    with torch.no_grad():  # heads unlike any fresh initialisation
        for param in [*trained.image_calibration.parameters(), *trained.text_calibration.parameters()]:
            param.add_(torch.randn_like(param))
    torch.save({"state_dict": trained.state_dict(), "hyper_parameters": dict(trained.hparams)}, tmp_path / "m.ckpt")
    resumed = MulCLIP(model_name=TEST_MODEL, init_from=str(tmp_path / "m.ckpt"))
    for (name, a), b in zip(trained.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


def test_init_from_refuses_a_plain_weights_file_and_pretrained_together(tmp_path):
    torch.save(MulCLIP(model_name=TEST_MODEL).backbone.clip.state_dict(), tmp_path / "w.pt")
    with pytest.raises(Exception, match="not a Lightning checkpoint.*--model.pretrained"):
        MulCLIP(model_name=TEST_MODEL, init_from=str(tmp_path / "w.pt"))
    with pytest.raises(ValueError, match="set only one"):
        MulCLIP(model_name=TEST_MODEL, init_from=str(tmp_path / "w.pt"), pretrained=str(tmp_path / "w.pt"))
