"""SynthLong's hard negatives are wrong in exactly the way their kind says."""

import random
from collections import Counter

import pytest

from mulclip_pl.data.synthlong.negatives import KINDS, negative, negatives_by_kind
from mulclip_pl.data.synthlong.scenes import SceneObject, caption

SCENE = [SceneObject("circle", "red", "small", "solid", 0, 0), SceneObject("square", "blue", "large", "striped", 1, 1),
         SceneObject("cross", "green", "small", "outlined", 2, 2)]
VARIANTS = [0, 1, 2]
TRUTH = caption(SCENE, VARIANTS)


def _sentences(text):
    return text.split(". ")


def _words(text):
    return Counter(word.strip(".,") for word in text.split())


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("attribute", ["colour", "shape", "size"])
def test_attribute_change_rewrites_one_word_of_one_sentence(attribute, seed):
    wrong = negative(attribute, SCENE, VARIANTS, random.Random(seed))
    changed = [(a, b) for a, b in zip(_sentences(TRUTH), _sentences(wrong)) if a != b]
    assert len(changed) == 1
    words_a, words_b = changed[0][0].split(), changed[0][1].split()
    assert len(words_a) == len(words_b) and sum(x != y for x, y in zip(words_a, words_b)) == 1


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("kind", ["binding", "position"])
def test_swaps_keep_every_word_but_move_it_to_another_object(kind, seed):
    wrong = negative(kind, SCENE, VARIANTS, random.Random(seed))
    assert wrong != TRUTH and _words(wrong) == _words(TRUTH)
    assert sum(a != b for a, b in zip(_sentences(TRUTH), _sentences(wrong))) == 2  # exactly two objects' sentences


def test_count_changes_only_the_stated_number_and_absent_adds_one_sentence():
    rng = random.Random(0)
    count = negative("count", SCENE, VARIANTS, rng)
    assert _sentences(count)[1:] == _sentences(TRUTH)[1:] and _sentences(count)[0] != _sentences(TRUTH)[0]
    assert " 3 objects" not in count and " 1 objects" not in count
    absent = _sentences(negative("absent", SCENE, VARIANTS, rng))
    assert len(absent) == len(_sentences(TRUTH)) + 1 and absent[0] == _sentences(TRUTH)[0]
    extra = [s for s in absent if s not in _sentences(TRUTH)]
    assert len(extra) == 1 and all(cell not in extra[0] for cell in ("top left", "center", "bottom right"))


def test_swaps_between_identical_objects_are_redrawn_so_the_caption_is_still_wrong():
    twins = [SceneObject("circle", "red", "small", "solid", 0, 0), SceneObject("circle", "red", "small", "solid", 2, 2)]
    truth = caption(twins, [0, 0])
    for kind in KINDS:
        assert negative(kind, twins, [0, 0], random.Random(1)) != truth, kind


def test_mixed_pool_holds_ten_distinct_wrong_captions():
    pool = negatives_by_kind(SCENE, VARIANTS, random.Random(3))
    assert set(pool) == {*KINDS, "mixed"} and all(len(pool[k]) == 1 for k in KINDS)
    assert len(set(pool["mixed"])) == 10 and TRUTH not in pool["mixed"]
