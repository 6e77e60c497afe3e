"""``--model.sentence_features span``: sentence embeddings pooled from the long caption's tokens."""

import random

import pytest
import torch
import torch.nn.functional as F

from mulclip_pl.data.caption_tokens import CaptionFields, tokenise_caption
from mulclip_pl.model.sentence_features import span_sentence_features
from mulclip_pl.module import MulCLIP
from mulclip_pl.tokenizer import LongTextTokenizer
from tests.conftest import TEST_MODEL

SENTENCES = ["A red cup stands on the left.", "The blue pen next to it is long and thin.", "A green book lies open.",
             "Behind them hangs a yellow clock.", "The wall is white."]


def test_each_span_is_the_mean_of_its_tokens():
    t_tokens = torch.tensor([[[9.0, 9.0], [1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [0.0, 4.0], [7.0, 7.0]]])
    spans = torch.tensor([[[1, 3], [3, 5], [5, 5], [0, 6]]])
    mask = torch.tensor([[True, True, True, False]])
    pooled, valid = span_sentence_features(t_tokens, spans, mask)
    torch.testing.assert_close(pooled[0, :2], torch.tensor([[1.0, 0.0], [0.0, 1.0]]))  # means (2, 0), (0, 3), normalised
    assert valid.tolist() == [[True, True, False, False]]  # an empty span and an absent sentence take no part


@pytest.mark.parametrize("selection, context", [("first", 248), ("random", 248), ("first", 16)])
def test_spans_point_at_each_chosen_sentence_inside_the_long_caption(selection, context):
    tokenizer = LongTextTokenizer(context)
    caption = tokenise_caption(tokenizer, " ".join(SENTENCES), SENTENCES, None)
    fields = CaptionFields(context, max_sentences=3, selection=selection)(caption, random.Random(4))
    long, subs, spans = fields["long"], fields["sub"], fields["sub_span"]
    eot = int((long == tokenizer.eot).nonzero()[0])
    for sentence, (start, end) in zip(subs, spans.tolist()):
        words = sentence[1:int((sentence == tokenizer.eot).nonzero()[0])].tolist()  # without start / end tokens
        assert long[start:end].tolist() == words[:end - start] and end <= eot
        assert end - start == len(words) or end == eot  # whole, or cut where the truncated caption ends
    if context == 16:  # the caption is cut: the third sentence starts after the end token, so its span is empty
        assert spans[2, 0] == spans[2, 1] == eot


def test_span_mode_adds_no_text_pass_and_trains():
    torch.manual_seed(0)
    tokenizer = LongTextTokenizer()
    fields = CaptionFields(248, max_sentences=3, selection="first")
    rows = [fields(tokenise_caption(tokenizer, " ".join(SENTENCES[i:i + 3]), SENTENCES[i:i + 3], None)) for i in range(3)]
    batch = {key: torch.stack([row[key] for row in rows]) for key in ("long", "short", "sub", "sub_mask", "sub_span")}
    batch["image"] = torch.randn(3, 3, 32, 32)
    encoded_rows = {}
    for mode in ("encoded", "span"):
        module = MulCLIP(model_name=TEST_MODEL, preset="no_wpr", sentence_features=mode)
        seen = []
        original = module.backbone.encode_text
        module.backbone.encode_text = lambda tokens, **kw: seen.append(tokens.shape[0]) or original(tokens, **kw)
        losses = module.compute_losses(batch)
        encoded_rows[mode] = sum(seen)
        losses.total.backward()
        assert torch.isfinite(losses.terms["sub"]) and module.backbone.clip.token_embedding.weight.grad.abs().sum() > 0
    assert encoded_rows == {"encoded": 3 + 3 + 9, "span": 3 + 3}  # long + (summaries + 9 sentences) vs long + summaries
