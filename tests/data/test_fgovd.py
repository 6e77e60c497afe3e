"""FG-OVD reader and box datasets: known rows, the bad-row policy, crops and RoI boxes."""

import pytest
import torch

from mulclip_pl.data import FGOVD
from mulclip_pl.data.corpora.fgovd import read_fgovd, split_file
from mulclip_pl.data.corpora.fgovd_datamodule import crop_rectangle
from mulclip_pl.data.records import ProblemLog
from mulclip_pl.errors import DataError
from tests.data.box_and_class_fixtures import BLUE, RED, fgovd_row, write_fgovd

MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073])[:, None, None]
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711])[:, None, None]


def test_reader_keeps_good_rows_and_counts_each_kind_of_bad_row(tmp_path):
    rows = [
        fgovd_row(),                                  # 1 good
        fgovd_row(box=(40, 0, 30, 32)),               # 2 box overhangs the 64 px width by 6 px
        fgovd_row(negatives=9),                       # 3 wrong number of negatives
        fgovd_row(img="val2017/missing.jpg"),         # 4 missing image
        {"img_path": "val2017/000000000001.jpg", "bbox": [0, 0, 8, 8], "pos_expression": ["x"]},  # 5 no negatives
        fgovd_row(box=(0, 0, 0, 5)),                  # 6 empty box
        fgovd_row(box=(32.5, 0, 32.3, 32), img="000000000001.jpg", positive="a  blue\nsquare"),  # 7 good: 0.8 px overhang, bare name
    ]
    write_fgovd(tmp_path, {"h_attributes_llava.jsonl": rows})
    problems = ProblemLog("skip")
    records = read_fgovd(split_file(tmp_path, "hard"), tmp_path / "val2017", problems)
    assert [r.id for r in records] == ["h_attributes_llava.jsonl:1", "h_attributes_llava.jsonl:7"]
    assert records[1].caption == "a blue square" and len(records[1].negatives) == 10
    assert records[1].box == (32.5, 0.0, 32.3, 32.0) and records[1].image_size == (64, 32)
    reasons = [reason.split(":")[0] for _, reason in problems.problems]
    assert reasons == ["box outside image", "wrong number of negatives", "missing image", "missing field", "bad box"]
    from_coco_root = read_fgovd(split_file(tmp_path, "hard"), tmp_path, ProblemLog("skip"))  # val2017's parent
    assert [r.image for r in from_coco_root] == [r.image for r in records]
    with pytest.raises(DataError, match=r"h_attributes_llava.jsonl:2: box outside image.*data.bad_input='skip'"):
        read_fgovd(split_file(tmp_path, "hard"), tmp_path, ProblemLog("error"))


def test_split_files_under_both_of_fg_clips_names(tmp_path):
    write_fgovd(tmp_path, {"1_attributes_llava.jsonl": [fgovd_row()], "m_attributes_llava.jsonl": [fgovd_row()]})
    assert split_file(tmp_path, "hard").name == "1_attributes_llava.jsonl"
    assert split_file(tmp_path, "medium").name == "m_attributes_llava.jsonl"
    with pytest.raises(DataError, match="e_attributes_llava.jsonl.*3_attributes_llava.jsonl"):
        split_file(tmp_path, "easy")


def _items(root, box_features, **kwargs):
    data = FGOVD(root=str(root), splits=["hard", "trivial"], box_features=box_features, image_size=32, **kwargs)
    data.setup("test")
    sets = data.eval_sets("test")
    return sets, [sets[0].dataset[i] for i in range(2)]


def test_crop_mode_encodes_the_box_alone(tmp_path):
    sets, (red, blue) = _items(write_fgovd(tmp_path), "crop")
    assert [s.name for s in sets] == ["fgovd_hard", "fgovd_trivial"] and sets[0].kind == "boxes"
    for item, colour in ((red, RED), (blue, BLUE)):
        pixels = (item["image"] * STD + MEAN).mean(dim=(1, 2))
        torch.testing.assert_close(pixels, torch.tensor(colour, dtype=torch.float32) / 255, atol=0.02, rtol=0)
    assert red["texts"].shape == (11, 248) and "box" not in red


def test_roi_mode_keeps_the_whole_image_and_gives_the_box_as_fractions(tmp_path):
    _, (red, blue) = _items(write_fgovd(tmp_path), "roi")
    assert red["image"].shape == (3, 32, 32)  # 64x32 squashed, not cropped: both halves are there
    pixels = red["image"] * STD + MEAN
    assert pixels[0, :, :14].mean() > 0.95 and pixels[2, :, 18:].mean() > 0.95  # red left, blue right
    torch.testing.assert_close(red["box"], torch.tensor([0.0, 0.0, 0.5, 1.0]))
    torch.testing.assert_close(blue["box"], torch.tensor([0.5, 0.0, 1.0, 1.0]))


def test_crop_rectangle_stays_inside_and_is_never_empty():
    assert crop_rectangle((10.2, 3.7, 5.1, 2.0), (64, 32)) == (10, 3, 16, 6)
    assert crop_rectangle((63.5, 31.9, 0.2, 0.05), (64, 32)) == (63, 31, 64, 32)
    assert crop_rectangle((-0.5, 0, 64.8, 32), (64, 32)) == (0, 0, 64, 32)
