import random

from mulclip_pl.data.text import SentenceSplitter, clean_caption, select_sentences, summary_for


def test_splitter_keeps_abbreviations_and_decimals_together():
    sentences = SentenceSplitter()("Dr. Smith measured 3.5 m of rope. It was e.g. very long! Was it? Yes.")
    assert sentences == ["Dr. Smith measured 3.5 m of rope.", "It was e.g. very long!", "Was it?", "Yes."]


def test_blank_lines_split_single_newlines_do_not():
    text = "A red ball sits\non a table.\n\nA heading without period\n\nThe end."
    assert SentenceSplitter()(text) == ["A red ball sits on a table.", "A heading without period", "The end."]


def test_clean_caption_collapses_whitespace():
    assert clean_caption("  a\n\tb   c \r\n") == "a b c"


def test_summary_prefers_dataset_then_first_sentence():
    assert summary_for(["First.", "Second."], "  own summary ", "dataset") == "own summary"
    assert summary_for(["First.", "Second."], None, "dataset") == "First."
    assert summary_for(["First.", "Second."], "own", "first_sentence") == "First."


def test_select_sentences_first_random_and_cap():
    sentences = [f"s{i}." for i in range(10)]
    assert select_sentences(sentences, 3, "first") == ["s0.", "s1.", "s2."]
    picked = select_sentences(sentences, 4, "random", random.Random(0))
    assert len(picked) == 4 and picked == sorted(picked, key=sentences.index) and set(picked) <= set(sentences)
    assert select_sentences(sentences, 4, "random", random.Random(0)) == picked  # seeded: reproducible
    assert select_sentences(sentences[:2], 4, "random") == sentences[:2]
