import json
import shutil
from types import SimpleNamespace

import datasets
import pytest
import torch

from mulclip_pl.data import DOCCI, GenericCaptions, HFCaptions, Urban1K
from mulclip_pl.data.datasets import Skipped, collate, replace_bad_sample
from mulclip_pl.errors import DataError
from tests.data import fixtures


def _module(cls, policy, **kwargs):
    return cls(bad_input=policy, num_workers=0, batch_size=2, image_size=32, **kwargs)


def test_wrong_root_names_path_and_layout(tmp_path):
    dm = _module(Urban1K, None, root=str(tmp_path / "missing"))
    with pytest.raises(DataError, match=r"Urban1K root not found: .*missing. Expected image/<k>.jpg"):
        dm.setup("test")


def test_missing_and_corrupt_images(tmp_path):
    fixtures.write_docci(tmp_path)
    (tmp_path / "images" / "test_00001.jpg").unlink()
    (tmp_path / "images" / "test_00002.jpg").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match=r"test_00001: missing image: .*test_00001.jpg"):
        _module(DOCCI, "error", root=str(tmp_path), val_fraction=0).setup("test")
    dm = _module(DOCCI, "error", root=str(tmp_path), val_fraction=0, check_files=False)
    dm.setup("test")
    dataset = dm.eval_sets("test")[0].dataset
    with pytest.raises(DataError, match=r"unreadable image: .*test_00002.jpg \(record test_00002\)"):
        dataset[1]


def test_skip_policy_counts_in_batches(tmp_path):
    fixtures.write_docci(tmp_path)
    (tmp_path / "images" / "train_00002.jpg").write_bytes(b"corrupt")
    dm = _module(DOCCI, "skip", root=str(tmp_path), val_fraction=0)
    dm.setup("fit")
    bad = next(i for i, r in enumerate(dm.train_set.records) if r.id == "train_00002")
    keys = [(0, i) for i in range(len(dm.train_set))]
    batch = collate([dm.train_set[k] for k in keys])
    assert batch["n_skipped"] == 1 and "train_00002" in batch["skipped"][0]
    assert batch["image"].shape[0] == len(keys)  # a stand-in keeps the batch size (ranks stay in step)
    stand_in = batch["index"][bad].item()
    assert stand_in != bad and dm.train_set[(0, bad)]["index"] == stand_in  # the same one every time
    assert not torch.equal(batch["long"][bad], torch.zeros_like(batch["long"][bad]))


def test_empty_caption_and_missing_fields(tmp_path):
    rows = [{"image": "a.png", "caption": "  "}, {"caption": "no image field"}, "not an object", {"image": "a.png", "caption": "ok."}]
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken json")
    fixtures.write_generic(tmp_path)  # writes a.png
    with pytest.raises(DataError, match=r"c.jsonl:1: empty caption"):
        _module(GenericCaptions, "error", test_file=str(path)).setup("test")
    dm = _module(GenericCaptions, "skip", test_file=str(path))
    dm.setup("test")
    assert len(dm.eval_sets("test")[0].dataset) == 1
    reasons = [reason for _, reason in dm.problems[-1].problems]
    assert len(reasons) == 4 and sum("missing field" in r for r in reasons) == 2 and any("invalid JSON" in r for r in reasons)


def test_duplicate_ids_are_reported(tmp_path, caplog):
    rows = [{"image": "a.png", "caption": "x.", "id": "same"}, {"image": "b.png", "caption": "y.", "id": "same"}]
    fixtures.write_generic(tmp_path)
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    _module(GenericCaptions, "error", test_file=str(tmp_path / "d.jsonl")).setup("test")
    assert "1 duplicate ids" in caplog.text


def test_overlong_caption_error_policy(tmp_path):
    rows = [{"image": "a.png", "caption": "word " * 300}]
    fixtures.write_generic(tmp_path)
    (tmp_path / "long.jsonl").write_text(json.dumps(rows[0]))
    dm = _module(GenericCaptions, "error", train_file=str(tmp_path / "long.jsonl"), overflow="error")
    dm.setup("fit")
    with pytest.raises(ValueError, match="needs 302 tokens but the context is 248"):
        dm.train_set[0]
    lenient = _module(GenericCaptions, "error", train_file=str(tmp_path / "long.jsonl"))
    lenient.setup("fit")
    assert collate([lenient.train_set[0]])["n_truncated"] == 1


def test_reduced_scale_decode_keeps_at_least_the_model_size(tmp_path):
    from PIL import Image

    from mulclip_pl.data.images import load_image

    Image.new("RGB", (1024, 768), (10, 200, 30)).save(tmp_path / "big.jpg")
    small = load_image(tmp_path / "big.jpg", "big", min_side=224)
    assert min(small.size) >= 224 and small.size[0] < 1024  # decoded at 1/2 or 1/4 scale
    assert load_image(tmp_path / "big.jpg", "big").size == (1024, 768)


def _broken_synth(synth12, root, broken: int):
    """synth12's 12 training pairs with the images of the first ``broken`` rows replaced by junk."""
    shutil.copytree(synth12, root)
    rows = [json.loads(line) for line in (root / "train.jsonl").read_text().splitlines()]
    for row in rows[:broken]:
        (root / row["image"]).write_bytes(b"junk")
    dm = _module(GenericCaptions, "skip", train_file=str(root / "train.jsonl"), check_files=False)
    dm.setup("fit")
    return dm.train_set, [i for i, r in enumerate(dm.train_set.records) if r.id in {row["id"] for row in rows[:broken]}]


def test_a_stand_in_changes_with_the_epoch_and_is_the_same_when_drawn_again(synth12, tmp_path):
    dataset, (bad,) = _broken_synth(synth12, tmp_path / "d", broken=1)
    stand_ins = [dataset[(epoch, bad)]["index"] for epoch in range(6)]
    assert stand_ins == [dataset[(epoch, bad)]["index"] for epoch in range(6)]  # a resume replays it
    assert bad not in stand_ins and len(set(stand_ins)) > 2  # not the same item every epoch


def test_a_stand_in_is_never_an_item_of_its_batch():
    build = lambda index: {"index": index}  # noqa: E731
    for seed in range(20):  # the only item outside the batch, whatever the draw
        assert replace_bad_sample(Skipped("x", "bad"), 0, seed, range(4), build, batch={1, 3})["index"] == 2
    with pytest.raises(DataError, match=r"no item outside the batch of bad item x: bad is left .* --data.batch_size"):
        replace_bad_sample(Skipped("x", "bad"), 0, 0, range(3), build, batch={1, 2})


def test_two_bad_items_of_one_batch_get_different_stand_ins(synth12, tmp_path):
    dataset, bad = _broken_synth(synth12, tmp_path / "d", broken=10)  # 2 good items left
    good = sorted(set(range(12)) - set(bad))
    for epoch in range(6):
        samples = dataset.__getitems__([(epoch, bad[0]), (epoch, bad[1])])  # how a DataLoader asks for a batch
        assert sorted(s["index"] for s in samples) == good, epoch
        alone = dataset.__getitems__([(epoch, bad[2]), (epoch, good[0])])
        assert alone[0]["index"] == good[1], epoch  # not the good item already in the batch


def test_streaming_stand_ins_are_never_items_of_their_batch(synth12, tmp_path):
    records = GenericCaptions(train_file=str(synth12 / "train.jsonl")).load("train", "train")
    images = [{"bytes": b"junk" if i % 3 else r.image.read_bytes(), "path": r.image.name} for i, r in enumerate(records)]
    table = datasets.Dataset.from_dict({"image": images, "caption": [r.caption for r in records]},
                                       features=datasets.Features({"image": datasets.Image(),
                                                                   "caption": datasets.Value("string")}))
    table.save_to_disk(str(tmp_path / "table"))  # rows 0, 3, 6, 9 good: every batch of 4 needs all four
    dm = _module(HFCaptions, "skip", path=str(tmp_path / "table"), streaming=True)
    dm.batch_size = 4
    dm.trainer = SimpleNamespace(world_size=1, global_rank=0, lightning_module=None)
    dm.setup("fit")
    for epoch in range(3):
        dm._train_progress = lambda epoch=epoch: (epoch, 0)
        batches = [batch["index"].tolist() for batch in dm.train_dataloader()]
        assert len(batches) == 3 and all(sorted(batch) == [0, 3, 6, 9] for batch in batches), (epoch, batches)
