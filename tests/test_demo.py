import json

import pytest

from mulclip_pl.demo import parse_args, run


def test_demo_runs_end_to_end_and_writes_its_run_folder(tmp_path):
    argv = ["--out", str(tmp_path / "run"), "--data", str(tmp_path / "synthlong"), "--stage1-epochs", "1",
            "--stage2-epochs", "1", "--workers", "0", "--eval-split", "val"]
    out = run(parse_args(argv))
    results = json.loads((out / "results.json").read_text())
    assert list(results) == ["stage1 (short-caption CLIP, 77 tokens)", "MulCLIP (full)"]
    for runs in results.values():
        assert 0 <= runs[0]["t2i_R@1"] <= 100 and 0 <= runs[0]["hard_negative_acc"] <= 100
    assert (out / "stage1_short_clip.pt").is_file() and (out / "full_seed0.ckpt").is_file()
    assert "| MulCLIP (full) | 1 |" in (out / "results.md").read_text()
    assert any((out / "tensorboard").rglob("events.out.tfevents*"))

    run(parse_args([*argv, "--rescore"]))  # scores the saved checkpoints again, no training
    assert json.loads((out / "results.json").read_text()) == results
    with pytest.raises(ValueError, match="lambda_word"):
        run(parse_args([*argv, "--rescore", "--set", "lambda_word=0.5"]))


@pytest.mark.parametrize("preset, changed, reusable", [
    ("global_only", {"lambda_word": 0.5, "lambda_sub": 0.5}, True),  # both weights unused by the variant
    ("no_wpr", {"lambda_word": 0.5}, True),
    ("no_wpr", {"lambda_sub": 0.5}, False),
    ("full", {"lambda_sub": 0.0}, False),  # switching SAP off changes training
])
def test_rescore_reuses_a_checkpoint_only_when_training_would_be_the_same(tmp_path, preset, changed, reusable):
    import torch

    from mulclip_pl.demo import load_trained
    from mulclip_pl.module import MulCLIP
    from tests.conftest import TEST_MODEL

    saved = MulCLIP(model_name=TEST_MODEL, preset=preset, lambda_word=0.1, lambda_sub=0.1)
    torch.save({"hyper_parameters": dict(saved.hparams), "epoch": 3, "state_dict": saved.state_dict()}, tmp_path / "c.ckpt")
    requested = MulCLIP(model_name=TEST_MODEL, preset=preset, **{"lambda_word": 0.1, "lambda_sub": 0.1, **changed})
    if reusable:
        load_trained(requested, tmp_path / "c.ckpt", epochs=3)
        assert torch.equal(requested.backbone.clip.visual.conv1.weight, saved.backbone.clip.visual.conv1.weight)
    else:
        with pytest.raises(ValueError, match="other settings"):
            load_trained(requested, tmp_path / "c.ckpt", epochs=3)


def test_set_overrides_keep_counts_integer_and_reject_unknown_keys():
    args = parse_args(["--set", "calibrated_tokens=4", "lr=2.5e-4", "sap_top_k_fraction=none", "grad_checkpointing=false"])
    assert args.set == {"calibrated_tokens": 4, "lr": 2.5e-4, "sap_top_k_fraction": None, "grad_checkpointing": False}
    assert isinstance(args.set["calibrated_tokens"], int)  # a float here would break nn.Linear's width
    with pytest.raises(SystemExit):
        parse_args(["--set", "learning_rate=1e-3"])
