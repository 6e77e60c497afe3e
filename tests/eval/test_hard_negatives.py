"""Hard-negative accuracy and the evaluator's wiring, on embeddings whose answers are known."""

import torch
import torch.nn.functional as F

from mulclip_pl.metrics.evaluator import Evaluator
from mulclip_pl.metrics.hard_negatives import HardNegativeAccuracy, hard_negative_accuracy


def test_positive_must_beat_every_negative_and_ties_count_against():
    image = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    positive = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.6, 0.8], [0.0, 1.0]])
    negatives = torch.stack([
        torch.tensor([[0.0, 1.0], [0.8, 0.6]]),   # 1 > 0 and 1 > 0.8: correct
        torch.tensor([[0.0, 1.0], [0.8, 0.6]]),   # 0.6 < 0.8 (second negative): wrong
        torch.tensor([[0.6, 0.8], [0.0, 1.0]]),   # 0.6 == 0.6: a tie counts against
        torch.tensor([[1.0, 0.0], [0.6, 0.8]]),   # 1 > 0 and 1 > 0.8: correct
    ])
    assert hard_negative_accuracy(image, positive, negatives) == 50.0
    assert hard_negative_accuracy(image[:1], positive[:1], negatives[:1, 1]) == 100.0  # one negative as (B, d)


def test_metric_counts_an_image_repeated_by_a_distributed_sampler_once():
    metric = HardNegativeAccuracy()
    image, positive = torch.eye(2), torch.eye(2)
    wrong = torch.eye(2)[:, None].flip(0)  # image 0's negative is image 1's caption and vice versa: both correct
    metric.update(image, positive, wrong, torch.tensor([0, 1]))
    metric.update(image[:1], positive[:1] * 0, wrong[:1], torch.tensor([0]))  # a padded repeat of index 0, scored wrong
    assert float(metric.compute()["hard_negative_acc"]) == 100.0


class _Spec:
    name, kind, hard_negatives, recall, class_names = "toy", "retrieval", True, True, []


class _Data:
    def eval_sets(self, stage):
        return [_Spec()]


def test_evaluator_scores_the_first_caption_of_each_image_against_its_negatives():
    """Two images with two captions each; token id k encodes to embedding row k of TABLE."""
    table = F.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.95, 0.3], [0.7, 0.7]]), dim=-1)

    def encode_text(tokens):
        return table[tokens[:, 0]]

    evaluator = Evaluator()
    evaluator.prepare(_Data(), "test", encode_text, context_length=4, device=torch.device("cpu"))
    batch = {
        "image": torch.tensor([[1.0, 0.0], [0.0, 1.0]]),  # encode_image is the identity here
        "index": torch.tensor([0, 1]),
        "captions": torch.tensor([[0], [1], [2], [3]]),
        "caption_index": torch.arange(4),
        "caption_image": torch.tensor([0, 0, 1, 1]),
        # image 0: its first caption (row 0, score 1.0) beats the negative row 1 (0.99), which ties its
        # second caption; image 1: its first caption (row 2, 1.0) beats row 5 (0.71). Scoring the
        # last caption instead (a tie for image 0) or caption `index` (row 1 for image 1) gives 50.
        "negatives": torch.tensor([[[1]], [[5]]]),
    }
    evaluator.update(batch, 0, lambda images: images, encode_text)
    results = evaluator.compute()["toy"]
    assert results["hard_negative_acc"] == 100.0
    assert results["i2t_R@1"] == 100.0 and results["t2i_R@1"] == 100.0
