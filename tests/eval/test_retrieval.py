import pytest
import torch
import torch.nn.functional as F

from mulclip_pl.eval.retrieval import RetrievalRecall, recall_at_k
from mulclip_pl.eval.zeroshot import ZeroShotAccuracy


def _basis(n, d=8):
    return torch.eye(d)[:n]


def test_known_ranks_one_caption_per_image():
    images = _basis(4)
    # caption 0 -> image 0 (rank 0); caption 1 points at image 2 (its own image 1 ranks 2nd);
    # caption 2 -> image 2; caption 3 is orthogonal to everything (ties with all: pessimistic rank 3)
    texts = torch.stack([images[0], F.normalize(images[2] + 0.5 * images[1], dim=0), images[2], torch.eye(8)[7]])
    r = recall_at_k(images, texts, torch.arange(4), ks=(1, 2, 5))
    assert r["t2i_R@1"] == 50.0 and r["t2i_R@2"] == 75.0 and r["t2i_R@5"] == 100.0
    # image 1 scores caption 1 (0.447) below nothing else: hit. image 2 prefers caption 2 (1.0) and caption 1: hit.
    # image 3 ties (0) with captions 0/1/2 and its own caption 3 -> pessimistic rank 3.
    assert r["i2t_R@1"] == 75.0 and r["i2t_R@5"] == 100.0


def test_ties_count_against_the_model():
    images = torch.ones(3, 4) / 2
    texts = torch.ones(3, 4) / 2  # a collapsed model: everything identical
    r = recall_at_k(images, texts, torch.arange(3), ks=(1, 3))
    assert r["i2t_R@1"] == 0.0 and r["t2i_R@1"] == 0.0 and r["t2i_R@3"] == 100.0


def test_multi_caption_image_hits_if_any_caption_retrieved():
    images = _basis(2)
    texts = torch.stack([torch.eye(8)[5], images[0], images[1], torch.eye(8)[6]])  # image 0 owns captions 0, 1
    owner = torch.tensor([0, 0, 1, 1])
    r = recall_at_k(images, texts, owner, ks=(1,))
    assert r["i2t_R@1"] == 100.0  # each image's best own caption is ranked first
    assert r["t2i_R@1"] == 50.0  # captions 0 and 3 tie on both images


def test_chunked_equals_full():
    g = torch.Generator().manual_seed(0)
    images = F.normalize(torch.randn(37, 16, generator=g), dim=-1)
    texts = F.normalize(images.repeat_interleave(3, 0) + 0.8 * torch.randn(111, 16, generator=g), dim=-1)
    owner = torch.arange(37).repeat_interleave(3)
    full = recall_at_k(images, texts, owner, chunk_size=10_000)
    chunked = recall_at_k(images, texts, owner, chunk_size=7)
    assert full == chunked
    assert 0 < full["i2t_R@1"] < 100


def test_metric_deduplicates_repeated_samples():
    images, owner = _basis(3), torch.arange(3)
    texts = images.clone()
    metric = RetrievalRecall()
    metric.update(images[:2], torch.tensor([0, 1]), texts[:2], torch.tensor([0, 1]), owner[:2])
    metric.update(images[1:], torch.tensor([1, 2]), texts[1:], torch.tensor([1, 2]), owner[1:])  # sample 1 twice
    result = metric.compute()
    assert result["i2t_R@1"] == 100.0 and result["t2i_R@1"] == 100.0
    assert metric.image_emb[0].shape[0] + metric.image_emb[1].shape[0] == 4


def test_zero_shot_accuracy_known_answer():
    metric = ZeroShotAccuracy(ks=(1, 2))
    logits = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.5, 0.1, 0.4], [0.5, 0.1, 0.4]])
    metric.update(logits, torch.tensor([0, 0, 2, 2]), torch.tensor([0, 1, 2, 2]))
    result = metric.compute()
    assert result["top1"] == pytest.approx(100 / 3) and result["top2"] == pytest.approx(100.0)
