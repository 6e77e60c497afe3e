"""Zero-shot CIFAR is prompted as CLIP's release and clip_benchmark prompt it: on a CIFAR-format
fixture, clip_benchmark's classifier and accuracy equal ``mulclip-pl test``'s."""

import json
import pickle

import numpy as np
import open_clip
import pytest
import torch

from mulclip_pl.cli import main
from mulclip_pl.data.corpora.classification import read_cifar
from mulclip_pl.metrics.zeroshot import build_zeroshot_classifier
from mulclip_pl.metrics.zeroshot_metadata import CIFAR100_CLASSNAMES, templates_for
from mulclip_pl.module import MulCLIP
from mulclip_pl.tokenizer import LongTextTokenizer
from tests.conftest import TEST_MODEL
from tests.trained_fixtures import write_checkpoint

pytest.importorskip("clip_benchmark")
import torchvision.datasets.cifar  # noqa: E402
from clip_benchmark.datasets.builder import build_dataset  # noqa: E402
from clip_benchmark.metrics.zeroshot_classification import run_classification, zero_shot_classifier  # noqa: E402

CIFAR10_RELEASE_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar(root, names, batch="test_batch", meta="batches.meta", labels_key="labels",
                names_key="label_names", folder="cifar-10-batches-py", n=40):
    """The python release's layout and keys (what torchvision's reader, and so clip_benchmark, reads too)."""
    rng = np.random.default_rng(0)
    (root / folder).mkdir(parents=True, exist_ok=True)
    data = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            labels_key: rng.integers(0, len(names), n).tolist()}
    (root / folder / batch).write_bytes(pickle.dumps(data))
    (root / folder / meta).write_bytes(pickle.dumps({names_key: names}))


@pytest.fixture(scope="module")
def cifar_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_cifar(root / "cifar", CIFAR10_RELEASE_NAMES)
    ckpt = write_checkpoint(root / "model.ckpt")
    main(["test", "--model.model_name", TEST_MODEL, "--model.preset", "global_only", "--ckpt_path", str(ckpt),
          "--data", "CIFAR10", "--data.root", str(root / "cifar"), "--data.num_workers", "0",
          "--trainer.accelerator", "cpu", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
          "--trainer.default_root_dir", str(root / "run")])
    main(["export", "--ckpt", str(ckpt), "--out", str(root / "export")])
    ours = json.loads((root / "run" / "results.json").read_text())["results"]["cifar10"]
    return root, ckpt, ours


@pytest.fixture
def unchecked_cifar(monkeypatch):
    """torchvision checks the real release's md5 sums; the fixture is not the real release."""
    monkeypatch.setattr(torchvision.datasets.cifar.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *args, **kwargs: True)


def test_cifar10_class_embeddings_equal_clip_benchmarks(cifar_run, unchecked_cifar):
    root, ckpt, _ = cifar_run
    model, _, transform = open_clip.create_model_and_transforms(f"local-dir:{root / 'export'}")
    dataset = build_dataset("cifar10", root=str(root / "cifar"), transform=transform, split="test", download=False)
    theirs = zero_shot_classifier(model.eval(), open_clip.get_tokenizer(f"local-dir:{root / 'export'}"),
                                  dataset.classes, dataset.templates, "cpu", amp=False)  # (d, C)
    _, names = read_cifar(root / "cifar", 10)
    with torch.no_grad():
        ours = build_zeroshot_classifier(MulCLIP.load_trained(ckpt).encode_text, LongTextTokenizer(), names)  # (C, d)
    assert names == dataset.classes and len(dataset.templates) == 18
    torch.testing.assert_close(ours, theirs.T, rtol=0, atol=1e-5)


def test_cifar10_accuracy_equals_clip_benchmarks(cifar_run, unchecked_cifar):
    """clip_benchmark's classifier and logits (its CLI's ``accuracy`` fails under numpy 2: top-k is redone here)."""
    root, _, ours = cifar_run
    name = f"local-dir:{root / 'export'}"
    model, _, transform = open_clip.create_model_and_transforms(name)
    dataset = build_dataset("cifar10", root=str(root / "cifar"), transform=transform, split="test", download=False)
    classifier = zero_shot_classifier(model.eval(), open_clip.get_tokenizer(name), dataset.classes, dataset.templates,
                                      "cpu", amp=False)
    logits, target = run_classification(model, classifier, torch.utils.data.DataLoader(dataset, batch_size=16), "cpu",
                                        amp=False)
    top5 = logits.topk(5, dim=1).indices == target[:, None]
    assert 0 < ours["top1"] < 100
    assert 100 * top5[:, 0].float().mean().item() == pytest.approx(ours["top1"], abs=1e-4)
    assert 100 * top5.any(dim=1).float().mean().item() == pytest.approx(ours["top5"], abs=1e-4)


def test_cifar100_names_are_clips_and_prompts_are_clip_benchmarks(tmp_path):
    """CIFAR-100's release names ``aquarium_fish``; CLIP's prompts say ``aquarium fish``."""
    release = [name.replace(" ", "_") for name in CIFAR100_CLASSNAMES]
    write_cifar(tmp_path, release, batch="test", meta="meta", labels_key="fine_labels", names_key="fine_label_names",
                folder="cifar-100-python", n=4)
    _, names = read_cifar(tmp_path, 100)
    assert names == list(CIFAR100_CLASSNAMES) and "aquarium fish" in names
    from clip_benchmark.datasets import builder

    with open(builder.os.path.join(builder.os.path.dirname(builder.__file__),
                                   "en_zeroshot_classification_templates.json")) as handle:
        expected = json.load(handle)["cifar100"]
    assert [template("{c}") for template in templates_for(names)] == expected
