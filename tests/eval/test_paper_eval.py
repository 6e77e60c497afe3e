"""configs/paper/eval.yaml builds every set the paper reports; FG-OVD and ImageNet-O run through `mulclip-pl test`."""

import json

import lightning as L
import pytest

from mulclip_pl.cli import main
from mulclip_pl.module import MulCLIP
from tests.conftest import TEST_MODEL
from tests.data.box_and_class_fixtures import fgovd_row, write_fgovd, write_imagenet
from tests.model.test_paper_configs import PAPER, BuildOnly, _local_copy

SETS = ["docci", "dci", "urban1k", "sharegpt4v", "coco", "flickr30k", "cifar10", "cifar100", "imagenet_v2",
        "imagenet_o", "fgovd"]


def test_eval_config_lists_every_unset_path_at_once(capfd):
    with pytest.raises(SystemExit) as exit_info:
        main(["test", "--config", str(PAPER / "eval.yaml")])
    err = capfd.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert all(f"data.datasets[{i}]." in err for i in range(len(SETS)))
    assert "data.datasets[10].image_root: /path/to/coco/val2017" in err


def test_eval_config_builds_every_set_of_the_paper_in_one_suite(tmp_path):
    cli = BuildOnly(MulCLIP, L.LightningDataModule, subclass_mode_data=True, run=False, args=[
        "--config", str(_local_copy(PAPER / "eval.yaml", tmp_path)), "--model.model_name", TEST_MODEL])
    suite = cli.datamodule
    assert [d.name for d in suite.datasets] == SETS
    fgovd = suite.datasets[-1]
    assert fgovd.splits == ["hard", "medium", "easy", "trivial"] and fgovd.box_features == "crop"
    assert suite.datasets[3].slices["test"] == "0:1000"  # ShareGPT4V-1k


def _run_test(tmp_path, *args):
    main(["test", "--model.model_name", TEST_MODEL, "--trainer.logger", "false", "--trainer.enable_progress_bar",
          "false", "--trainer.default_root_dir", str(tmp_path / "out"), *args])
    return json.loads((tmp_path / "out" / "results.json").read_text())["results"]


@pytest.mark.parametrize("box_features", ["crop", "roi"])
def test_fgovd_from_the_command_line_scores_each_split(tmp_path, box_features):
    tied = [fgovd_row() | {"neg_expression": ["a red square"] * 10}] * 2  # every negative equals the positive
    write_fgovd(tmp_path, {"h_attributes_llava.jsonl": tied,
                           "e_attributes_llava.jsonl": [fgovd_row(), fgovd_row(box=(32, 0, 32, 32))]})
    results = _run_test(tmp_path, "--data", "FGOVD", "--data.root", str(tmp_path), "--data.splits", "[hard,easy]",
                        "--data.box_features", box_features, "--data.num_workers", "0")
    assert set(results) == {"fgovd_hard", "fgovd_easy"}
    assert results["fgovd_hard"] == {"hard_negative_acc": 0.0}  # ties count against: a blind model scores 0
    assert results["fgovd_easy"]["hard_negative_acc"] in (0.0, 50.0, 100.0)  # 2 boxes


def test_imagenet_o_zero_shot_from_the_command_line(tmp_path):
    write_imagenet(tmp_path / "imagenet-o", "wnid")
    results = _run_test(tmp_path, "--data", "ImageNetO", "--data.root", str(tmp_path / "imagenet-o"),
                        "--data.num_workers", "0")
    assert set(results["imagenet_o"]) == {"top1", "top5"}
    assert results["imagenet_o"]["top5"] == 100.0  # 3 classes: the right one is always in the top 5
    hits = results["imagenet_o"]["top1"] * 6 / 100  # 6 images
    assert hits == pytest.approx(round(hits), abs=1e-4)
