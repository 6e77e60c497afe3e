"""Each of SynthLong's hard-negative rows (``synthlong``, ``synthlong_colour``, ..., ``synthlong_top1_of_N``)
scores the negatives of its own kind: its data module's columns (``SynthLong.build_eval_sets``) through the
evaluator (``negative_views``), from the generated jsonl to the results.

The text encoder is rigged: in some images one negative beats the positive, of the k-th kind in k images
(a negative that is not also another kind's in its image). Every row's accuracy then tells which column it read.
"""

import json

import pytest
import torch

from mulclip_pl.data import SynthLong
from mulclip_pl.data.synthlong import generator as synthlong
from mulclip_pl.data.synthlong.negatives import KINDS, MIXED_SIZES
from mulclip_pl.metrics.evaluator import Evaluator

CATEGORIES = ("negative", *KINDS, "mixed")  # the one-change negative, one per kind, the first mixed one
IMAGES = 48  # 0 + 1 + ... + 8 = 36 beaten, and spares for the images where a kind's text is also another's


def _texts(row: dict) -> dict[str, list[str]]:
    """Each results row of SynthLong, with the negatives it should score for this jsonl row."""
    negatives = row["negatives"]
    return {"synthlong": [row["negative"]], **{f"synthlong_{kind}": negatives[kind][:1] for kind in KINDS},
            **{f"synthlong_top1_of_{n + 1}": negatives["mixed"][:n] for n in MIXED_SIZES}}


def _text(row: dict, category: str) -> str:
    return row["negative"] if category == "negative" else row["negatives"][category][0]


def _only_its_kind(row: dict, category: str) -> bool:
    """The negative of ``category`` is not also the one-change or a kind's negative of this image."""
    others = [_text(row, c) for c in CATEGORIES[:-1] if c != category]
    return _text(row, category) not in others


def _choose(rows: list[dict]) -> list[str | None]:
    """Per image, the category of its negative that will beat the positive (None: none does)."""
    beaten: list[str | None] = [None] * len(rows)
    for count, category in enumerate(CATEGORIES):
        for _ in range(count):
            i = next(i for i, row in enumerate(rows) if beaten[i] is None and _only_its_kind(row, category))
            beaten[i] = category
    return beaten


def test_each_hard_negative_row_scores_its_own_kind(tmp_path, monkeypatch):
    monkeypatch.setattr(synthlong, "SPLITS", {"train": 2, "val": 2, "test": IMAGES})
    data = SynthLong(root=str(tmp_path), image_px=32, batch_size=2, eval_batch_size=16, num_workers=0)
    data.setup("test")
    rows = [json.loads(line) for line in (tmp_path / "test.jsonl").read_text().splitlines()]
    winning = {_text(row, category) for row, category in zip(rows, _choose(rows)) if category}
    tokenizer = data.eval_sets("test")[0].dataset.tokenizer
    winners = {key.tobytes() for key in tokenizer(sorted(winning)).numpy()}
    positives = {key.tobytes() for key in tokenizer([r["caption"] for r in rows]).numpy()}
    assert not winners & positives

    def encode_text(tokens):  # a winning negative 1, a positive 0.5, any other negative -1
        keys = [key.tobytes() for key in tokens.numpy()]
        return torch.tensor([[1.0 if k in winners else 0.5 if k in positives else -1.0] for k in keys])

    evaluator = Evaluator()
    evaluator.prepare(data, "test", encode_text, context_length=tokenizer.context_length, device=torch.device("cpu"))
    for batch in data.test_dataloader()[0]:
        evaluator.update(batch, 0, lambda images: torch.ones(len(images), 1), encode_text)
    results = evaluator.compute()

    expected = {}
    for row in rows:  # the positive wins where none of the row's texts is a winning one
        for view, texts in _texts(row).items():
            expected.setdefault(view, []).append(not set(texts) & winning)
    expected = {view: pytest.approx(100.0 * sum(hits) / len(hits)) for view, hits in expected.items()}
    assert {view: results[view]["hard_negative_acc"] for view in expected} == expected
    own = [expected[view].expected for view in ["synthlong", *(f"synthlong_{k}" for k in KINDS), "synthlong_top1_of_2"]]
    assert len(set(own)) == len(CATEGORIES)  # every kind beaten in its own number of images: no two rows alike
