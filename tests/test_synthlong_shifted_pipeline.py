"""The demo's test call scores SynthLong and its cross-domain set in one table; `--data SynthLongShifted` works alone."""

import json
from pathlib import Path

import yaml

from mulclip_pl.cli import main
from mulclip_pl.data.synthlong import generator as synthlong
from tests.conftest import TEST_MODEL

# The demo's test calls leave the top-1-of-N rows and the rows per kind out (`make bench-quality` turns
# them on).
KIND_ROWS = ("colour", "shape", "size", "binding", "position", "count", "absent")


def _common(tmp_path, run):
    return ["--model.model_name", TEST_MODEL, "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
            "--run_name", run, "--trainer.default_root_dir", str(tmp_path / "test" / run)]


def test_demo_test_config_scores_both_sets_and_report_merges_them(tmp_path, monkeypatch):
    monkeypatch.setattr(synthlong, "SPLITS", {"train": 4, "val": 4, "test": 6})
    monkeypatch.setattr(synthlong, "SHIFTED_SPLITS", {"test": 6})
    suite = yaml.safe_load(Path("configs/synthlong/test.yaml").read_text())  # the shipped file, made small
    for dataset in suite["data"]["init_args"]["datasets"]:
        dataset["init_args"].update(root=str(tmp_path / dataset["class_path"]), image_px=32, num_workers=0)
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(suite))
    main(["test", "--config", "configs/synthlong/stage1.yaml", "--config", str(tmp_path / "test.yaml"),
          *_common(tmp_path, "suite")])
    results = json.loads((tmp_path / "test" / "suite" / "results.json").read_text())["results"]
    for name in ("synthlong", "synthlong_shifted"):
        assert {"i2t_R@1", "t2i_R@1", "hard_negative_acc"} <= set(results[name])
    assert not [row for row in results if "top1_of" in row or row.endswith(KIND_ROWS)]
    for name in ("web_synthlong", "web_shifted"):  # stage 1's short captions, each domain's words and look
        assert {"i2t_R@1", "t2i_R@1"} <= set(results[name]) and "hard_negative_acc" not in results[name]
    # one row per set, in the config's order (no rows per view)
    assert list(results) == ["synthlong", "synthlong_shifted", "web_synthlong", "web_shifted"]

    main(["test", "--config", "configs/synthlong/stage1.yaml", "--data", "SynthLongShifted",
          "--data.root", str(tmp_path / "mulclip_pl.data.SynthLongShifted"), "--data.image_px", "32",
          "--data.num_workers", "0", *_common(tmp_path, "alone")])
    alone = json.loads((tmp_path / "test" / "alone" / "results.json").read_text())["results"]
    # The same set and untrained model; alone it also scores every kind (negative_kinds' default), same main row.
    assert alone["synthlong_shifted"] == results["synthlong_shifted"]
    assert all(f"synthlong_shifted_{kind}" in alone for kind in KIND_ROWS)

    main(["report", str(tmp_path / "test"), "--out", str(tmp_path / "results.md")])
    table = (tmp_path / "results.md").read_text()
    assert "| suite | synthlong | 1 |" in table and "| suite | synthlong_shifted | 1 |" in table
