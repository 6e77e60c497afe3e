import json

from mulclip_pl.demo import parse_args, run


def test_demo_runs_end_to_end_and_writes_its_run_folder(tmp_path):
    out = run(parse_args(["--out", str(tmp_path / "run"), "--data", str(tmp_path / "synthlong"), "--stage1-epochs", "1",
                          "--stage2-epochs", "1", "--workers", "0", "--eval-split", "val"]))
    results = json.loads((out / "results.json").read_text())
    assert list(results) == ["stage1 (short-caption CLIP, 77 tokens)", "MulCLIP (full)"]
    for runs in results.values():
        assert 0 <= runs[0]["t2i_R@1"] <= 100 and 0 <= runs[0]["hard_negative_acc"] <= 100
    assert (out / "stage1_short_clip.pt").is_file() and (out / "full_seed0.ckpt").is_file()
    assert "| MulCLIP (full) | 1 |" in (out / "results.md").read_text()
    assert any((out / "tensorboard").rglob("events.out.tfevents*"))
