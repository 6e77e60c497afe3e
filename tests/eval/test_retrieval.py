import pytest
import torch
import torch.nn.functional as F

from mulclip_pl.metrics.retrieval import RetrievalRecall, recall_at_k
from mulclip_pl.metrics.zeroshot import ZeroShotAccuracy


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


def test_an_image_with_two_close_captions_still_ranks_first():
    """COCO/Flickr have five captions per image: an image's *other* captions are not competitors.

    Image 0's first caption is its worse one (another image's caption beats it); image 1 has the
    same caption twice (an exact tie); image 2's first caption ties on images 0 and 2.
    """
    e = torch.eye(8)
    images = e[:3]
    texts = torch.stack([
        F.normalize(e[0] + 1.2 * e[2], dim=0),  # image 0: 0.640 (image 2: 0.768)
        F.normalize(e[0] + 0.1 * e[7], dim=0),  # image 0: 0.995
        e[1], e[1],                             # image 1: 1.0 twice
        F.normalize(e[2] + e[0], dim=0),        # image 2: 0.707 (image 0: 0.707, a tie)
        e[2],                                   # image 2: 1.0
    ])
    owner = torch.tensor([0, 0, 1, 1, 2, 2])
    for chunk_size in (1, 2048):  # chunks of one image exercise the column offset
        r = recall_at_k(images, texts, owner, ks=(1, 2), chunk_size=chunk_size)
        # i2t: every image's best own caption (0.995, 1.0, 1.0) beats every other image's caption.
        assert r["i2t_R@1"] == 100.0
        # t2i: captions 0 (image 2 wins) and 4 (pessimistic tie) rank 2nd; the other four 1st.
        assert r["t2i_R@1"] == pytest.approx(400 / 6) and r["t2i_R@2"] == 100.0


def test_metric_maps_multi_caption_images_arriving_out_of_order():
    """Distributed samplers deliver images in any order: captions find their image by id, not position."""
    g = torch.Generator().manual_seed(1)
    images = F.normalize(torch.randn(4, 8, generator=g), dim=-1)
    texts = F.normalize(images.repeat_interleave(3, 0) + 0.9 * torch.randn(12, 8, generator=g), dim=-1)
    owner = torch.arange(4).repeat_interleave(3)
    expected = recall_at_k(images, texts, owner, ks=(1, 2))
    assert 0 < expected["i2t_R@1"] < 100 and 0 < expected["t2i_R@1"] < 100  # a case where the mapping matters
    image_id = torch.tensor([40, 10, 30, 20])  # ids need be neither positions nor in order (a held-out subset)
    metric = RetrievalRecall(ks=(1, 2))
    for batch in ([2, 0], [3, 1]):  # rank 0 and rank 1 of a 2-way shard, gathered
        rows = torch.tensor(batch)
        caps = torch.cat([torch.arange(3 * i, 3 * i + 3) for i in batch])
        metric.update(images[rows], image_id[rows], texts[caps], 100 + caps, image_id[owner[caps]])
    assert metric.compute() == expected

