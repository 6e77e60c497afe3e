import pytest
import torch

from mulclip_pl.errors import CaptionTooLongError
from mulclip_pl.model.long_text import stretch_positional_embedding
from mulclip_pl.tokenizer import LongTextTokenizer


def longclip_reference(pos: torch.Tensor, keep: int = 20) -> torch.Tensor:
    """Long-CLIP's published loop (model_longclip.py), transcribed, as the ground truth."""
    length, dim = pos.shape
    new = torch.zeros(4 * length - 3 * keep, dim)
    new[:keep] = pos[:keep]
    for i in range(length - 1 - keep):
        for r in range(4):
            new[4 * i + r + keep] = (4 - r) * pos[i + keep] / 4 + r * pos[i + 1 + keep] / 4
    for r in range(4):
        new[4 * length - 3 * keep - 4 + r] = pos[length - 1] + r * (pos[length - 1] - pos[length - 2]) / 4
    return new


def test_stretch_matches_longclip_reference():
    pos = torch.randn(77, 16)
    new = stretch_positional_embedding(pos)
    assert new.shape == (248, 16)
    torch.testing.assert_close(new, longclip_reference(pos))
    assert torch.equal(new[:20], pos[:20])
    assert torch.equal(new[20::4][:57], pos[20:])


def test_tokenizer_pads_to_248_and_ends_with_eot(tokenizer):
    tokens = tokenizer(["a red circle", "a blue square on the left"])
    assert tokens.shape == (2, 248)
    assert tokens[0, 0] == tokenizer.sot
    assert tokens[0].argmax() == 4  # sot, a, red, circle, eot
    assert tokens[0, 5:].eq(0).all()


def test_overflow_error_names_the_problem():
    strict = LongTextTokenizer(context_length=16, overflow="error")
    with pytest.raises(CaptionTooLongError, match="needs .* tokens but the context is 16"):
        strict(["word " * 40])


def test_overflow_truncate_counts_and_keeps_eot():
    lenient = LongTextTokenizer(context_length=16, overflow="truncate")
    tokens = lenient(["word " * 40, "short"])
    assert lenient.n_truncated == 1
    assert tokens[0, -1] == lenient.eot
    assert lenient.count_tokens("word " * 40) == 42
