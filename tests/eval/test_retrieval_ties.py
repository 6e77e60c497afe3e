"""Ties in retrieval: ``pessimistic`` (default) and ``clip_benchmark``, figures worked out by hand,
and on a COCO-format fixture with duplicate captions, clip_benchmark's own figures reproduced."""

import json

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader

from mulclip_pl.data.corpora.karpathy import read_karpathy
from mulclip_pl.data.datasets import RetrievalDataset, collate
from mulclip_pl.data.records import ProblemLog
from mulclip_pl.metrics.retrieval import RetrievalRecall, recall_at_k
from mulclip_pl.tokenizer import LongTextTokenizer

E = torch.eye(256)
DOG = F.normalize(E[0] + E[1], dim=0)  # "a dog on a sofa.", a caption of image 0 and of image 1
# Three images; image 0 and image 1 share one caption. Captions in data-set order, with their image:
CORE = [("a dog on a sofa.", 0, DOG), ("a cushion.", 0, F.normalize(0.5 * E[0] + E[-1], dim=0)),
        ("a dog on a sofa.", 1, DOG), ("a blanket.", 1, F.normalize(E[1] + 0.1 * E[-2], dim=0)),
        ("a lamp.", 2, E[2])]
# By hand (scores against images 0, 1, 2):
# i2t. Image 0: its best caption, "dog" (0.707), ties image 1's "dog", listed later: pessimistic rank 1,
#      clip_benchmark 0. Image 1: "blanket" (0.995) beats everything. Image 2: "lamp" (1.0).
# t2i. Caption 0 ("dog", image 0) ties on images 0 and 1: pessimistic 1, clip_benchmark 0 (image 0 is
#      earlier). Caption 2 ("dog", image 1): image 0 ties and is earlier: 1 under both. Others: 0.
HAND = {"pessimistic": {"i2t_R@1": 200 / 3, "t2i_R@1": 60.0}, "clip_benchmark": {"i2t_R@1": 100.0, "t2i_R@1": 80.0}}


@pytest.mark.parametrize("ties", ["pessimistic", "clip_benchmark"])
def test_duplicate_captions_by_hand(ties):
    texts, owner = torch.stack([c[2] for c in CORE]), torch.tensor([c[1] for c in CORE])
    for chunk_size in (1, 2048):
        r = recall_at_k(E[:3], texts, owner, ks=(1, 2), chunk_size=chunk_size, ties=ties)
        assert r["i2t_R@1"] == pytest.approx(HAND[ties]["i2t_R@1"])
        assert r["t2i_R@1"] == pytest.approx(HAND[ties]["t2i_R@1"])
        assert r["i2t_R@2"] == r["t2i_R@2"] == 100.0  # every tie fits in the top 2


def test_unknown_tie_rule_is_refused():
    with pytest.raises(ValueError, match="ties must be 'pessimistic' or 'clip_benchmark'"):
        RetrievalRecall(ties="optimistic")


# On the COCO fixture the three images above are followed by FILLER images with one caption each that
# only they match (score 1, 0 elsewhere): rows are then >= 64 * K long, the length from which
# torch.topk (clip_benchmark's ranking) keeps the earlier of equal scores.
FILLER = 125
N_IMAGES, N_TEXTS = 3 + FILLER, len(CORE) + FILLER


def _captions():
    return CORE + [(f"filler caption {i}.", 3 + i, E[3 + i]) for i in range(FILLER)]


def write_coco(root):
    """Karpathy's dataset_coco.json and a COCO captions file over the same PNGs (pixel = image number)."""
    karpathy, images, annotations = [], [], []
    for i in range(N_IMAGES):
        name = f"img_{i}.png"
        (root / "val2014").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4), (i % 256, i // 256, 0)).save(root / "val2014" / name)
        caps = [text for text, image, _ in _captions() if image == i]
        karpathy.append({"filename": name, "filepath": "val2014", "imgid": i, "split": "test",
                         "sentences": [{"raw": c} for c in caps]})
        images.append({"id": i, "file_name": name})
        annotations += [{"id": 100 * i + j, "image_id": i, "caption": c} for j, c in enumerate(caps)]
    (root / "dataset_coco.json").write_text(json.dumps({"images": karpathy, "dataset": "coco"}))
    (root / "annotations.json").write_text(json.dumps({"images": images, "annotations": annotations}))


class HandModel:
    """An image is its number's basis vector; a caption, its vector in the table above."""

    def __init__(self, tokenizer):
        self.by_tokens = {tuple(tokenizer(text)[0].tolist()): vector for text, _, vector in _captions()}

    def encode_image(self, numbers):
        return E[numbers]

    def encode_text(self, tokens):
        return torch.stack([self.by_tokens[tuple(row.tolist())] for row in tokens])


def image_number(image):
    red, green, _ = image.getpixel((0, 0))
    return torch.tensor(red + 256 * green)


def test_clip_benchmark_rule_reproduces_clip_benchmark_on_duplicate_captions(tmp_path):
    pytest.importorskip("clip_benchmark")
    pytest.importorskip("pycocotools")
    from clip_benchmark.datasets.builder import build_dataset, get_dataset_collate_fn
    from clip_benchmark.metrics import zeroshot_retrieval

    write_coco(tmp_path)
    tokenizer = LongTextTokenizer()
    model = HandModel(tokenizer)
    dataset = build_dataset("mscoco_captions", root=str(tmp_path), transform=image_number, split="test",
                            annotation_file=str(tmp_path / "annotations.json"), download=False,
                            task="zeroshot_retrieval")
    loader = DataLoader(dataset, batch_size=50, collate_fn=get_dataset_collate_fn("mscoco_captions"))
    theirs = zeroshot_retrieval.evaluate(model, loader, tokenizer, device="cpu", amp=False, recall_k_list=[1, 2])

    records = read_karpathy(tmp_path / "dataset_coco.json", tmp_path, "test", ProblemLog())
    ours = {}
    for ties in ("pessimistic", "clip_benchmark"):
        metric = RetrievalRecall(ks=(1, 2), ties=ties)
        for batch in DataLoader(RetrievalDataset(records, image_number, tokenizer, "error"), batch_size=50,
                                collate_fn=collate):
            metric.update(model.encode_image(batch["image"]), batch["index"], model.encode_text(batch["captions"]),
                          batch["caption_index"], batch["caption_image"])
        ours[ties] = {k: float(v) for k, v in metric.compute().items()}
    for ties, hand in HAND.items():  # the core by hand; each filler is a hit
        assert ours[ties]["i2t_R@1"] == pytest.approx(100 * (hand["i2t_R@1"] * 3 / 100 + FILLER) / N_IMAGES)
        assert ours[ties]["t2i_R@1"] == pytest.approx(100 * (hand["t2i_R@1"] * 5 / 100 + FILLER) / N_TEXTS)
    for k in (1, 2):
        assert 100 * theirs[f"text_retrieval_recall@{k}"] == pytest.approx(ours["clip_benchmark"][f"i2t_R@{k}"])
        assert 100 * theirs[f"image_retrieval_recall@{k}"] == pytest.approx(ours["clip_benchmark"][f"t2i_R@{k}"])
    assert ours["pessimistic"]["i2t_R@1"] < ours["clip_benchmark"]["i2t_R@1"]


def test_the_modules_tie_option_reaches_the_retrieval_metric():
    from types import SimpleNamespace

    from mulclip_pl.data.base import EvalSet
    from mulclip_pl.module import MulCLIP
    from tests.conftest import TEST_MODEL

    datamodule = SimpleNamespace(eval_sets=lambda stage: [EvalSet("set", "retrieval", dataset=None)])
    for rule in ("pessimistic", "clip_benchmark"):
        module = MulCLIP(model_name=TEST_MODEL, preset="global_only", eval_ties=rule)
        module.evaluator.prepare(datamodule, "test", module.encode_text, 248, torch.device("cpu"))
        assert module.evaluator.metrics["set"]["retrieval"].ties == rule
