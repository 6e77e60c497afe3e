"""The evaluator's bookkeeping: each eval set its own metrics, several captions per image, several batches."""

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

from mulclip_pl.eval.evaluator import Evaluator, TextCache

E = torch.eye(4)
# Token id k encodes to row k. Each image's second caption (rows 1, 3) prefers another image.
TABLE = torch.stack([E[0], F.normalize(E[0] + 2 * E[1], dim=0), E[1], F.normalize(E[1] + 2 * E[2], dim=0),
                     E[2], F.normalize(E[2] + 0.5 * E[0], dim=0)])


@dataclass
class _Spec:
    name: str
    kind: str = "retrieval"
    hard_negatives: bool = False
    recall: bool = True


class _Data:
    def eval_sets(self, stage):
        return [_Spec("five_style"), _Spec("single")]


def _batch(images, captions, first_caption_id):
    """``images``: image ids (= rows of E); ``captions``: per image, its token ids."""
    flat = [c for caps in captions for c in caps]
    return {"image": E[images], "index": torch.tensor(images), "captions": torch.tensor(flat)[:, None],
            "caption_index": torch.arange(first_caption_id, first_caption_id + len(flat)),
            "caption_image": torch.tensor([i for i, caps in zip(images, captions) for _ in caps])}


def test_multi_caption_sets_over_several_batches_score_every_caption():
    def encode_text(tokens):
        return TABLE[tokens[:, 0]]

    evaluator = Evaluator()
    evaluator.prepare(_Data(), "test", encode_text, context_length=4, device=torch.device("cpu"))
    batches = [(0, _batch([0, 1], [[0, 1], [2, 3]], 0)), (1, _batch([0], [[1]], 0)),
               (0, _batch([2], [[4, 5]], 4)), (1, _batch([1], [[2]], 1))]
    for dataloader_idx, batch in batches:  # the two sets' loaders interleaved
        evaluator.update(batch, dataloader_idx, lambda images: images, encode_text)
    results = evaluator.compute()
    # Two captions per image: each image's own exact caption wins i2t; captions 1 and 3 miss t2i (4 of 6 hit).
    assert results["five_style"]["i2t_R@1"] == 100.0
    assert results["five_style"]["t2i_R@1"] == pytest.approx(400 / 6)
    # One caption per image (captions 1 and 2): caption 1 prefers image 1, so t2i is 1 of 2.
    assert results["single"]["i2t_R@1"] == 100.0 and results["single"]["t2i_R@1"] == 50.0


def test_views_sharing_captions_encode_each_text_once_and_score_as_without_the_cache(monkeypatch):
    """Two sets over the same images (as SynthLong's views): positives and nested negatives repeat."""
    calls = []

    def encode_text(tokens):
        calls.append(tokens[:, 0].tolist())
        return TABLE[tokens[:, 0]]

    class _Views:
        def eval_sets(self, stage):
            return [_Spec("one", hard_negatives=True), _Spec("three", hard_negatives=True, recall=False)]

    def batch(negatives):
        b = _batch([0, 1], [[1], [2]], 0)  # image 0's caption is the weak row 1
        b["negatives"] = torch.tensor(negatives)[..., None]
        return b

    def run(evaluator):
        evaluator.prepare(_Views(), "test", encode_text, context_length=4, device=torch.device("cpu"))
        evaluator.update(batch([[4], [3]]), 0, lambda images: images, encode_text)
        evaluator.update(batch([[4, 0, 0], [3, 4, 1]]), 1, lambda images: images, encode_text)
        return evaluator.compute()

    results = run(Evaluator())
    assert sorted(t for call in calls for t in call) == [0, 1, 2, 3, 4]  # each distinct text once
    # "one": both positives beat their negative. "three": image 0's negative 0 (= the image) beats its caption.
    assert results["one"]["hard_negative_acc"] == 100.0 and results["three"]["hard_negative_acc"] == 50.0
    monkeypatch.setattr(TextCache, "wrap", lambda self, encode: encode)  # the same pass without the cache
    calls.clear()
    assert run(Evaluator()) == results
    assert len([t for call in calls for t in call]) == 12  # 4 captions + 8 negatives, each encoded
