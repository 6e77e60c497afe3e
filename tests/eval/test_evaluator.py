"""The evaluator's bookkeeping: each eval set its own metrics, several captions per image, several batches."""

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

from mulclip_pl.metrics.evaluator import Evaluator, TextCache
from mulclip_pl.tokenizer import LongTextTokenizer

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


def _order_sensitive_encoder(seed):
    """Token rows -> (N, d): every position's token counts, in its place (a word swap or a change at
    position 240 moves the embedding), like a text tower and unlike a lookup of the first token."""
    generator = torch.Generator().manual_seed(seed)
    table, positions = torch.randn(49408, 16, generator=generator), torch.randn(248, 16, generator=generator)

    def encode(tokens):
        return F.normalize((table[tokens] * positions[: tokens.shape[1]]).sum(1), dim=-1)
    return encode


# Hard negatives that differ from their caption only far into the text, or only in word order.
PREFIX = "a wooden table by a window holds many small objects in a row. " * 17  # ~230 tokens
TWINS = [(PREFIX + "last, a red cup.", PREFIX + "last, a blue cup."),
         ("a red cup left of a blue bowl.", "a blue cup left of a red bowl."),
         ("a green hat.", "a green hat on a chair.")]


def test_texts_sharing_a_long_prefix_or_their_words_keep_their_own_embeddings():
    tokenizer = LongTextTokenizer()
    captions, negatives = (tokenizer([pair[k] for pair in TWINS]) for k in (0, 1))
    differs = (captions[0] != negatives[0]).nonzero()
    assert differs.min() > 200 and differs.max() < 247  # a long shared prefix, the difference kept (no truncation)
    assert torch.equal(captions[1].sort().values, negatives[1].sort().values)  # the same tokens, in another order
    encode = _order_sensitive_encoder(0)
    cached = TextCache().wrap(encode)
    texts = torch.cat([captions, negatives, captions[:1]])
    torch.testing.assert_close(cached(captions), encode(captions))
    torch.testing.assert_close(cached(texts), encode(texts))  # later calls: hits and misses mixed


def test_a_hard_negative_sharing_its_captions_prefix_is_scored_as_without_the_cache(monkeypatch):
    """Each image is its caption's exact embedding: every caption beats its negative, unless the cache
    hands the negative its caption's embedding (a tie, which counts against)."""
    tokenizer, encode = LongTextTokenizer(), _order_sensitive_encoder(0)
    captions, negatives = (tokenizer([pair[k] for pair in TWINS]) for k in (0, 1))
    batch = {"image": encode(captions), "index": torch.arange(3), "captions": captions,
             "caption_index": torch.arange(3), "caption_image": torch.arange(3), "negatives": negatives[:, None]}

    class _Twins:
        def eval_sets(self, stage):
            return [_Spec("twins", hard_negatives=True)]

    def run():
        evaluator = Evaluator()
        evaluator.prepare(_Twins(), "test", encode, context_length=248, device=torch.device("cpu"))
        evaluator.update(batch, 0, lambda images: images, encode)
        return evaluator.compute()

    results = run()
    assert results["twins"]["hard_negative_acc"] == 100.0 and results["twins"]["t2i_R@1"] == 100.0
    monkeypatch.setattr(TextCache, "wrap", lambda self, encode: encode)
    assert run() == results


def test_each_pass_encodes_with_the_model_of_that_pass():
    """Training moves the weights between validation passes: neither text embeddings nor zero-shot
    class embeddings may be carried over from the previous pass."""

    class _Sets:
        def eval_sets(self, stage):
            return [_Spec("retrieval", hard_negatives=True), _ClassSpec("classes")]

    tokenizer = LongTextTokenizer()
    captions, negatives = (tokenizer([pair[k] for pair in TWINS]) for k in (0, 1))
    before, after = _order_sensitive_encoder(0), _order_sensitive_encoder(1)

    def run(evaluator, encode):
        evaluator.prepare(_Sets(), "val", encode, context_length=248, device=torch.device("cpu"))
        batch = {"image": after(captions), "index": torch.arange(3), "captions": captions,
                 "caption_index": torch.arange(3), "caption_image": torch.arange(3), "negatives": negatives[:, None]}
        evaluator.update(batch, 0, lambda images: images, encode)
        evaluator.update({"image": batch["image"], "label": torch.tensor([0, 1, 0]), "index": torch.arange(3)}, 1,
                         lambda images: images, encode)
        return evaluator.compute(), evaluator.class_weights["classes"]

    fresh_results, fresh_weights = run(Evaluator(), after)
    assert run(Evaluator(), before)[0] != fresh_results  # the two models score differently
    evaluator = Evaluator()
    run(evaluator, before)
    results, weights = run(evaluator, after)  # the same evaluator, the next pass
    assert results == fresh_results
    torch.testing.assert_close(weights, fresh_weights)


@dataclass
class _ClassSpec:
    name: str
    kind: str = "classification"
    class_names: tuple = ("cup", "bowl")


@dataclass
class _ViewedSpec(_Spec):
    negative_views: dict | None = None


def test_views_side_by_side_score_as_one_set_per_view_in_the_same_order():
    """SynthLong's records carry every view's negatives in one row (``negative_views``): one pass
    must give each view the accuracy, and the results the rows and order, of one set per view."""
    encode = _order_sensitive_encoder(0)
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(1, 400, (5, 7, 6), generator=generator)  # 5 images: a caption and 6 negatives each
    tokens[..., -1] = 49407  # EOT
    captions, negatives = tokens[:, 0], tokens[:, 1:]
    images = F.normalize(encode(captions) + 0.9 * torch.randn(5, 16, generator=generator), dim=-1)
    views = {"set": (0, 1), "set_a": (1, 2), "set_b": (2, 3), "set_top": (3, 6)}

    def batch(negative_columns):
        return {"image": images, "index": torch.arange(5), "captions": captions, "caption_index": torch.arange(5),
                "caption_image": torch.arange(5), "negatives": negatives[:, negative_columns]}

    class _Side:
        def eval_sets(self, stage):
            return [_Spec("other", hard_negatives=True), _ViewedSpec("set", hard_negatives=True, negative_views=views)]

    class _Separate:
        def eval_sets(self, stage):
            return [_Spec("other", hard_negatives=True), *(_Spec(name, hard_negatives=True, recall=name == "set")
                                                         for name in views)]

    side, separate = Evaluator(), Evaluator()
    side.prepare(_Side(), "test", encode, context_length=6, device=torch.device("cpu"))
    separate.prepare(_Separate(), "test", encode, context_length=6, device=torch.device("cpu"))
    side.update(batch(slice(0, 1)), 0, lambda x: x, encode)
    side.update(batch(slice(0, 6)), 1, lambda x: x, encode)
    separate.update(batch(slice(0, 1)), 0, lambda x: x, encode)
    for k, (start, stop) in enumerate(views.values(), start=1):
        separate.update(batch(slice(start, stop)), k, lambda x: x, encode)
    expected = separate.compute()
    assert len({v["hard_negative_acc"] for v in expected.values()}) > 1  # the views differ: not vacuous
    results = side.compute()
    assert list(results) == list(expected) and results == expected


def test_texts_are_encoded_in_groups_of_similar_length_with_the_embeddings_of_one_call():
    """Sorting by length trims padding; each row's embedding is what one call over all rows gives."""
    tokenizer, encode = LongTextTokenizer(), _order_sensitive_encoder(0)
    texts = tokenizer([("a red cup. " * n).strip() for n in (9, 1, 5, 1, 12, 3)])
    calls = []

    def recording(tokens):
        calls.append(int(tokens.argmax(dim=-1).max()) + 1)  # what a causal text tower would encode
        return encode(tokens)

    cache = TextCache(group=2)
    torch.testing.assert_close(cache.wrap(recording)(texts), encode(texts))
    assert calls == sorted(calls) and len(calls) == 3  # 5 distinct texts, shortest first, 2 per call
