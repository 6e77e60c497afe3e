"""MulCLIP's terms leave identical texts out of each other's negatives; the option restores the paper's."""

import pytest
import torch
import torch.nn.functional as F

from mulclip_pl.module import MulCLIP
from mulclip_pl.objectives.contrastive import infonce
from mulclip_pl.objectives.identical_texts import text_keys
from mulclip_pl.objectives.sap import subcaption_patch_loss
from mulclip_pl.tokenizer import LongTextTokenizer
from tests.conftest import TEST_MODEL, make_batch


@pytest.fixture(scope="module")
def batch():
    """Six samples; summaries 0 and 3 are the same text, and every first sentence is the same."""
    batch = make_batch(6, LongTextTokenizer())
    batch["short"][3] = batch["short"][0]
    batch["sub"][:, 0] = batch["sub"][0, 0]
    return batch


def _terms_and_reference(batch, **kwargs):
    torch.manual_seed(0)
    module = MulCLIP(model_name=TEST_MODEL, preset="no_wpr", sap_top_k_fraction=None, **kwargs).eval()
    with torch.no_grad():
        terms = module.compute_losses(batch).terms
        image, scale = module.encode_image(batch["image"]), module.logit_scale()
        long, short = module.encode_text(batch["long"]), module.encode_text(batch["short"])
        b, m, length = batch["sub"].shape
        t_sub = module.encode_text(batch["sub"].view(b * m, length)).view(b, m, -1)
        v_loc = F.normalize(module.backbone.encode_image(batch["image"]).v_loc, dim=-1)
    return terms, (image, long, short, t_sub, v_loc, scale)


def test_by_default_identical_texts_are_not_negatives(batch):
    terms, (image, long, short, t_sub, v_loc, scale) = _terms_and_reference(batch)
    masked_short = infonce(image, short, scale, text_keys(batch["short"]))
    torch.testing.assert_close(terms["global_short"], masked_short, rtol=1e-5, atol=1e-5)
    assert abs(terms["global_short"] - infonce(image, short, scale)) > 1e-4
    torch.testing.assert_close(terms["global_long"], infonce(image, long, scale), rtol=1e-5, atol=1e-5)  # all distinct
    # Sentence index 0 is one text for every sample: no negative, so only indices 1 and 2 are averaged.
    kept = subcaption_patch_loss(t_sub[:, 1:], batch["sub_mask"][:, 1:], v_loc, scale)
    torch.testing.assert_close(terms["sub"], kept, rtol=1e-5, atol=1e-5)


def test_the_option_gives_the_papers_plain_losses(batch):
    terms, (image, long, short, t_sub, v_loc, scale) = _terms_and_reference(batch, identical_texts_as_negatives=True)
    torch.testing.assert_close(terms["global_short"], infonce(image, short, scale), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(terms["sub"], subcaption_patch_loss(t_sub, batch["sub_mask"], v_loc, scale),
                               rtol=1e-5, atol=1e-5)


def test_long_captions_that_share_their_first_100_tokens_stay_negatives():
    """Captions 0 and 1 share 100+ tokens and differ after: two texts, so the default loss is the
    plain one; made identical, they leave each other's negatives (the case tells the two apart)."""
    tokenizer = LongTextTokenizer()
    batch = make_batch(4, tokenizer)
    shared = "A long room with a wooden floor, white walls and a tall window on the left side. " * 6
    long = tokenizer([f"{shared}In the corner stands a {colour} chair." for colour in ("red", "blue", "green", "pink")])
    differ = (long[0] != long[1]).nonzero()
    assert len(differ) > 0 and differ.min() >= 100  # equal for the first 100 tokens, different after
    batch["long"] = long
    terms, (image, long_emb, *_, scale) = _terms_and_reference(batch)
    torch.testing.assert_close(terms["global_long"], infonce(image, long_emb, scale), rtol=1e-5, atol=1e-5)
    batch["long"] = long[[0, 0, 2, 3]]
    terms, (image, long_emb, *_, scale) = _terms_and_reference(batch)
    assert abs(terms["global_long"] - infonce(image, long_emb, scale)) > 1e-4
