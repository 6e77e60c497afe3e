import torch

from mulclip_pl.data import COCO, DOCCI, EvalSuite, ShareGPT4V, Urban1K
from mulclip_pl.data.records import ProblemLog
from tests.data import fixtures


def test_training_batch_shapes_and_sentence_mask(tmp_path):
    fixtures.write_docci(tmp_path)
    dm = DOCCI(root=str(tmp_path), val_fraction=0, batch_size=2, num_workers=0, image_size=32, max_sentences=4,
               sentence_selection="first")
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 32, 32)
    assert batch["long"].shape == (2, 248) and batch["short"].shape == (2, 248)
    assert batch["sub"].shape == (2, 4, 248) and batch["sub_mask"].dtype == torch.bool
    assert sorted(batch["sub_mask"].sum(1).tolist()) == [2, 3]  # "A blue cup. A green pen." and the DOCCI caption
    assert batch["n_skipped"] == 0


def test_multi_caption_retrieval_batches(tmp_path):
    fixtures.write_karpathy(tmp_path)
    dm = COCO(root=str(tmp_path), num_workers=0, image_size=32, eval_batch_size=4)
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()[0]))
    assert batch["captions"].shape == (10, 248)
    assert batch["caption_image"].tolist() == [0] * 5 + [1] * 5
    assert batch["caption_index"].tolist() == list(range(10))


def test_eval_suite_and_sharegpt_overlap_report(tmp_path, caplog):
    fixtures.write_urban1k(tmp_path / "u")
    path = fixtures.write_sharegpt4v(tmp_path / "s", n=4)
    suite = EvalSuite([Urban1K(root=str(tmp_path / "u"), num_workers=0, image_size=32),
                       ShareGPT4V(json_file=str(path), image_root=str(tmp_path / "s" / "images"), train_slice="1:",
                                  eval_slice="0:2", num_workers=0, image_size=32)])
    suite.setup("test")
    assert [s.name for s in suite.eval_sets("test")] == ["urban1k", "sharegpt4v"]
    assert len(suite.test_dataloader()) == 2
    assert "1 images are in both the training and the evaluation split" in caplog.text


def test_docci_holds_out_a_stable_validation_slice(tmp_path):
    fixtures.write_docci(tmp_path)
    dm = DOCCI(root=str(tmp_path), val_fraction=0.5, num_workers=0, image_size=32)
    train, val = dm.read_records("train", ProblemLog()), dm.read_records("val", ProblemLog())
    assert {r.id for r in train}.isdisjoint({r.id for r in val}) and len(train) + len(val) == 2
    assert [r.id for r in dm.read_records("val", ProblemLog())] == [r.id for r in val]


def test_eval_captions_cut_by_the_context_are_counted_once_per_split(caplog):
    from pathlib import Path

    from mulclip_pl.data import GenericCaptions
    from mulclip_pl.data.records import Record
    from mulclip_pl.tokenizer import LongTextTokenizer

    tokenizer = LongTextTokenizer(context_length=6)  # start + 4 words + end fit exactly
    records = [Record("a", Path("a.png"), "one two three four"), Record("b", Path("b.png"), "one two three four five",
                                                                        extra_captions=("one two", "1 2 3 4 5 6"))]
    dm = GenericCaptions(test_file="unused.jsonl")
    assert dm.report_long_captions(records, tokenizer, "test") == 2
    assert "2 of 4 captions are longer than the model's 6 tokens" in caplog.text
