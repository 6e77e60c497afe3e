"""Zero-shot classification: class embeddings, top-k accuracy and the evaluator's wiring, on known answers."""

import pytest
import torch
import torch.nn.functional as F

from mulclip_pl.metrics.evaluator import Evaluator
from mulclip_pl.metrics.zeroshot import ZeroShotAccuracy, build_zeroshot_classifier
from mulclip_pl.tokenizer import LongTextTokenizer


def test_label_outside_the_top_k_is_a_miss():
    metric = ZeroShotAccuracy(ks=(1, 2))
    logits = torch.tensor([[0.9, 0.5, 0.1, 0.0], [0.1, 0.2, 0.3, 0.9], [0.0, 0.1, 0.2, 0.3]])
    # sample 0: label 0 first; sample 1: label 2 is 2nd; sample 2: label 0 is 4th of 4 (outside the top 2)
    metric.update(logits, torch.tensor([0, 2, 0]), torch.arange(3))
    result = metric.compute()
    assert result["top1"] == pytest.approx(100 / 3) and result["top2"] == pytest.approx(200 / 3)


def test_class_embedding_is_the_mean_of_normalised_prompt_embeddings():
    """CLIP's recipe normalises each prompt first, so a prompt with a large norm does not dominate."""
    prompts = {"a cat": [10.0, 0.0], "art of a cat": [0.0, 1.0], "a dog": [0.0, -3.0], "art of a dog": [0.0, -1.0]}
    names = list(prompts)
    table = torch.tensor(list(prompts.values()))

    def tokenizer(texts):
        return torch.tensor([names.index(t) for t in texts])

    weights = build_zeroshot_classifier(lambda ids: table[ids], tokenizer, ["cat", "dog"],
                                        templates=[lambda c: f"a {c}", lambda c: f"art of a {c}"])
    torch.testing.assert_close(weights, torch.tensor([[0.5**0.5, 0.5**0.5], [0.0, -1.0]]))


class _Spec:
    name, kind, hard_negatives, class_names = "toy", "classification", False, ["dog", "cat"]  # not sorted


class _Data:
    def eval_sets(self, stage):
        return [_Spec()]


def test_evaluator_scores_images_against_the_classes_in_their_listed_order():
    tokenizer = LongTextTokenizer(77)
    cat, dog = (int(tokenizer(name)[0, 1]) for name in ("cat", "dog"))

    def encode_text(tokens):  # a prompt embeds to its class name's axis: (cat, dog)
        return torch.stack([(tokens == cat).any(1), (tokens == dog).any(1)], dim=1).float()

    evaluator = Evaluator()
    evaluator.prepare(_Data(), "test", encode_text, context_length=77, device=torch.device("cpu"))
    images = F.normalize(torch.tensor([[0.1, 1.0], [1.0, 0.2], [0.3, 1.0]]), dim=-1)  # dog, cat, dog-like
    evaluator.update({"image": images, "label": torch.tensor([0, 1, 1]), "index": torch.arange(3)}, 0,
                     lambda x: x, encode_text)
    result = evaluator.compute()["toy"]
    assert result["top1"] == pytest.approx(200 / 3) and result["top5"] == 100.0
