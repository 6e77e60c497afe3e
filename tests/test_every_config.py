"""Every YAML under configs/ runs as shipped: a fit of 2 steps, or its test call, with only what a CPU
needs changed (the tiny model, small batches, no loader workers, 2 gloo processes for a strategy).

The configs' ``/path/to/`` placeholders and ``runs/`` / ``data/`` folders point into one folder that
holds every data set in its real on-disk layout (tests/data/fixtures.py), so a key that parses but
breaks at setup fails here, not for the first user. A config added under configs/ is picked up by
the glob; one that needs a data set not written below fails with the path it missed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mulclip_pl.cli import PLACEHOLDER, main
from mulclip_pl.data.synthlong import generator as synthlong
from tests.conftest import TEST_MODEL, write_image
from tests.data.box_and_class_fixtures import coco_image, write_fgovd, write_imagenet
from tests.data.fixtures import write_dci, write_karpathy, write_urban1k
from tests.eval.test_zeroshot_clip_benchmark import CIFAR10_RELEASE_NAMES, write_cifar
from tests.helpers.cli import run_cli
from tests.trained_fixtures import write_checkpoint

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "configs").rglob("*.yaml"))
PAPER_BASE = "configs/paper/docci_vitb16.yaml"
FIT_BASE = "configs/docci.yaml"  # what a strategy overlay is added to


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One folder with every data set the configs name, in each one's release layout."""
    root = tmp_path_factory.mktemp("world")
    docci = [{"example_id": f"{split}_{i:05d}", "split": split, "image_file": f"{split}_{i:05d}.jpg",
              "description": f"A {colour} ball sits on a table. Behind it hangs poster {i}."}
             for split, count in (("train", 100), ("test", 4)) for i in range(count)
             for colour in [("red", "green", "blue", "white")[i % 4]]]
    (root / "docci").mkdir()
    (root / "docci" / "docci_descriptions.jsonlines").write_text("".join(json.dumps(r) + "\n" for r in docci))
    for i, row in enumerate(docci):
        write_image(root / "docci" / "images" / row["image_file"], (60 * (i % 4), 100, 200))
    write_urban1k(root / "Urban1k")
    write_dci(root / "densely_captioned_images")
    sharegpt = [{"id": str(i), "image": f"coco/train2017/{i % 4:012d}.jpg", "conversations": [
        {"from": "human", "value": "<image>\nDescribe the image in detail."},
        {"from": "gpt", "value": f"The image {i} shows a long scene. There are many things."}]} for i in range(1008)]
    for i in range(4):
        write_image(root / "sharegpt4v" / "data" / f"coco/train2017/{i:012d}.jpg", (50 * i, 80, 90))
    (root / "share-captioner_coco_lcs_sam_1246k_1107.json").write_text(json.dumps(sharegpt))
    write_karpathy(root / "coco")
    write_karpathy(root / "flickr30k", coco=False)
    write_cifar(root / "cifar", CIFAR10_RELEASE_NAMES, n=8)
    write_cifar(root / "cifar", [f"class_{i}" for i in range(100)], batch="test", meta="meta",
                labels_key="fine_labels", names_key="fine_label_names", folder="cifar-100-python", n=8)
    write_imagenet(root / "imagenetv2-matched-frequency-format-val", layout="v2")
    write_imagenet(root / "imagenet-o")
    write_fgovd(root / "fgovd")
    coco_image(root / "coco")
    checkpoint = write_checkpoint(root / "model.ckpt")
    return root, checkpoint


def _local(config: str, root: Path) -> Path:
    """The config with placeholders, run folders and demo data folders moved under ``root``."""
    text = (ROOT / config).read_text().replace(PLACEHOLDER, f"{root}/")
    text = text.replace("runs/", f"{root}/runs/").replace("root: data/", f"root: {root}/data/")
    local = root / "configs" / config
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_text(text)
    return local


def _kind(config: str) -> str:
    settings = yaml.safe_load((ROOT / config).read_text()) or {}
    if config.startswith("configs/strategies/"):
        return "strategy"
    if "model" not in settings and "data" in settings:
        return "test"  # a data-only config: evaluated with a checkpoint
    return "overlay" if config.startswith("configs/paper/") and config != PAPER_BASE else "fit"


CPU_FIT = ["--model.model_name", TEST_MODEL, "--model.pretrained", "null", "--data.init_args.batch_size", "2",
           "--data.init_args.num_workers", "0", "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1",
           "--trainer.num_sanity_val_steps", "0", "--trainer.enable_progress_bar", "false",
           "--trainer.precision", "32-true", "--trainer.accelerator", "cpu"]  # devices: 1 unless a strategy runs


@pytest.fixture
def small_synthlong(monkeypatch):
    monkeypatch.setattr(synthlong, "SPLITS", {"train": 8, "val": 4, "test": 6})
    monkeypatch.setattr(synthlong, "SHIFTED_SPLITS", {"test": 6})


@pytest.mark.parametrize("config", CONFIGS)
def test_every_shipped_config_runs(world, config, small_synthlong):
    root, checkpoint = world
    kind = _kind(config)
    if kind == "test":
        main(["test", "--config", str(_local(config, root)), "--model.model_name", TEST_MODEL, "--ckpt_path",
              str(checkpoint), "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
              "--trainer.default_root_dir", str(root / "runs" / "test" / config)])
        results = json.loads((root / "runs" / "test" / config / "results.json").read_text())["results"]
        assert results and all(results.values())
        return
    if kind == "strategy":
        return _run_strategy(config, root)
    configs = [PAPER_BASE, config] if kind == "overlay" else [config]
    if config.endswith("stage2.yaml"):
        _ensure_stage1(root)
    args = [arg for c in configs for arg in ("--config", str(_local(c, root)))]
    main(["fit", *args, *CPU_FIT, "--trainer.devices", "1"])
    settings = yaml.safe_load(_local(configs[-1], root).read_text())
    written = Path(settings.get("checkpoint", {}).get("dirpath") or yaml.safe_load(
        _local(configs[0], root).read_text())["checkpoint"]["dirpath"]) / "last.ckpt"
    assert written.is_file(), f"{config}: no last.ckpt where the config says ({written})"


def _ensure_stage1(root: Path) -> None:
    if not (root / "runs" / "demo" / "stage1" / "last.ckpt").is_file():
        main(["fit", "--config", str(_local("configs/synthlong/stage1.yaml", root)), *CPU_FIT, "--trainer.devices", "1"])


def _run_strategy(config: str, root: Path) -> None:
    """The overlay on the DOCCI config, 2 gloo processes; FSDP through the CPU subclass (tests/fsdp_cpu.py)."""
    settings = yaml.safe_load((ROOT / config).read_text())
    strategy = settings["trainer"]["strategy"]
    swap = (["--trainer.strategy.class_path", "tests.fsdp_cpu.CPUFSDPStrategy"]
            if isinstance(strategy, dict) and strategy["class_path"].endswith("FSDPStrategy") else [])
    out = root / "runs" / "strategy" / Path(config).stem
    run_cli(["fit", "--config", str(_local(FIT_BASE, root)), "--config", str(_local(config, root)), *swap, *CPU_FIT,
             "--trainer.devices", "2", "--trainer.default_root_dir", str(out), "--checkpoint.dirpath", str(out)])
    assert (out / "last.ckpt").is_file()
