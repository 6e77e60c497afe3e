"""LAION clip_benchmark scores an exported model like ``mulclip-pl test`` does, on the same data."""

import json
import sys

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from mulclip_pl.cli import main
from mulclip_pl.module import MulCLIP
from mulclip_pl.tokenizer import LongTextTokenizer
from tests.conftest import TEST_MODEL
from tests.trained_fixtures import write_checkpoint

pytest.importorskip("clip_benchmark")
pytest.importorskip("pycocotools")
from clip_benchmark import cli as clip_benchmark_cli  # noqa: E402
from clip_benchmark.datasets.builder import build_dataset, get_dataset_collate_fn  # noqa: E402
from clip_benchmark.metrics import zeroshot_retrieval  # noqa: E402

N_IMAGES = 12  # > 10, so that R@10 is not certain
WORDS = ["red", "green", "blue", "yellow", "purple", "orange", "white", "black", "pink", "brown", "grey", "cyan"]


def captions_of(i: int) -> list[str]:
    """2-3 distinct captions per image, one of them past CLIP's 77 tokens for every third image."""
    caps = [f"a {WORDS[i]} square number {i}.", f"A photo of a {WORDS[i]} thing, seen from the left side."]
    if i % 3 == 0:
        caps.append(f"The {WORDS[i]} scene {i} has many parts. " * 12)
    return caps


def write_both_formats(root):
    """The same images and captions as Karpathy's dataset_coco.json (read by ``mulclip-pl test
    --data COCO``) and as a COCO captions annotation file (read by clip_benchmark's mscoco_captions)."""
    rng = np.random.default_rng(0)
    karpathy, coco_images, coco_annotations = [], [], []
    for i in range(N_IMAGES):
        name = f"img_{i}.jpg"
        (root / "val2014").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / "val2014" / name, quality=95)
        caps = captions_of(i)
        karpathy.append({"filename": name, "filepath": "val2014", "imgid": i, "split": "test",
                         "sentences": [{"raw": c} for c in caps]})
        coco_images.append({"id": i, "file_name": name})
        coco_annotations += [{"id": 100 * i + j, "image_id": i, "caption": c} for j, c in enumerate(caps)]
    (root / "dataset_coco.json").write_text(json.dumps({"images": karpathy, "dataset": "coco"}))
    annotations = root / "coco_test_annotations.json"
    annotations.write_text(json.dumps({"images": coco_images, "annotations": coco_annotations}))
    return annotations


def test_clip_benchmark_recall_equals_mulclip_pl_test(tmp_path, monkeypatch):
    annotations = write_both_formats(tmp_path / "coco")
    module = MulCLIP.load_trained(write_checkpoint(tmp_path / "model.ckpt"))
    _assert_no_ties(module, tmp_path / "coco")

    main(["test", "--model.model_name", TEST_MODEL, "--model.preset", "global_only", "--ckpt_path",
          str(tmp_path / "model.ckpt"), "--data", "COCO", "--data.root", str(tmp_path / "coco"),
          "--data.num_workers", "0", "--data.eval_batch_size", "5", "--trainer.accelerator", "cpu",
          "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
          "--trainer.default_root_dir", str(tmp_path / "run")])
    ours = json.loads((tmp_path / "run" / "results.json").read_text())["results"]["coco"]
    main(["export", "--ckpt", str(tmp_path / "model.ckpt"), "--out", str(tmp_path / "export")])
    model_name = f"local-dir:{tmp_path / 'export'}"

    # 1. clip_benchmark's retrieval code on a dataloader of (image, [captions]) built by clip_benchmark.
    model, _, transform = open_clip.create_model_and_transforms(model_name)
    dataset = build_dataset("mscoco_captions", root=str(tmp_path / "coco"), transform=transform, split="test",
                            annotation_file=str(annotations), download=False, task="zeroshot_retrieval")
    loader = torch.utils.data.DataLoader(dataset, batch_size=5, collate_fn=get_dataset_collate_fn("mscoco_captions"))
    metrics = zeroshot_retrieval.evaluate(model.eval(), loader, open_clip.get_tokenizer(model_name),
                                          device="cpu", amp=False, recall_k_list=[1, 5, 10])
    # 2. The clip_benchmark command line, as the README gives it.
    out = tmp_path / "clip_benchmark.json"
    monkeypatch.setattr(sys, "argv", [
        "clip_benchmark", "eval", "--model", model_name, "--pretrained", "mulclip", "--dataset", "mscoco_captions",
        "--dataset_root", str(tmp_path / "coco"), "--annotation_file", str(annotations), "--task",
        "zeroshot_retrieval", "--recall_k", "1", "5", "10", "--no_amp", "--num_workers", "0", "--batch_size", "5",
        "--output", str(out), "--quiet"])
    clip_benchmark_cli.main()
    cli_metrics = json.loads(out.read_text())["metrics"]

    assert len(dataset) == N_IMAGES and 0 < ours["t2i_R@1"] < 100  # a fixture that can tell models apart
    for k in (1, 5, 10):
        for found in (metrics, cli_metrics):  # clip_benchmark: fractions; image retrieval = text queries
            assert 100 * found[f"image_retrieval_recall@{k}"] == pytest.approx(ours[f"t2i_R@{k}"], abs=1e-4)
            assert 100 * found[f"text_retrieval_recall@{k}"] == pytest.approx(ours[f"i2t_R@{k}"], abs=1e-4)


def _assert_no_ties(module, root):
    """clip_benchmark breaks ties by topk order, mulclip-pl pessimistically: the fixture must hold none."""
    transform = open_clip.image_transform(32, is_train=False)
    images = torch.stack([transform(Image.open(root / "val2014" / f"img_{i}.jpg")) for i in range(N_IMAGES)])
    texts = [c for i in range(N_IMAGES) for c in captions_of(i)]
    with torch.no_grad():
        sims = module.eval().encode_text(LongTextTokenizer()(texts)) @ module.encode_image(images).T
    assert all(row.unique().numel() == row.numel() for row in sims)
    assert all(col.unique().numel() == col.numel() for col in sims.T)
