"""ImageNet val / V2 / O readers: labels are ImageNet-1k indices (timm's wnid list), names are open_clip's."""

import logging

import pytest
from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

from mulclip_pl.data import ImageNet, ImageNetO, ImageNetV2
from mulclip_pl.data.corpora.classification import imagenet_wnids, read_imagenet
from mulclip_pl.errors import DataError
from tests.conftest import write_image
from tests.data.box_and_class_fixtures import write_imagenet


def _labels(items):
    return {item.id: item.label for item in items}


def test_wnid_list_is_imagenet_order():
    wnids = imagenet_wnids()
    assert len(wnids) == 1000 and wnids[0] == "n01440764" and wnids[999] == "n15075141"
    assert wnids == sorted(wnids)


def test_imagenet_val_wnid_folders_map_to_the_1000_class_indices(tmp_path):
    write_imagenet(tmp_path, "wnid")
    items, names = read_imagenet(tmp_path, "wnid", "ImageNet")
    assert names == list(IMAGENET_CLASSNAMES)
    assert _labels(items) == {"n01440764/img0.JPEG": 0, "n01440764/img1.JPEG": 0, "n01443537/img0.JPEG": 1,
                              "n01443537/img1.JPEG": 1, "n15075141/img0.JPEG": 999, "n15075141/img1.JPEG": 999}
    assert names[999] == "toilet paper"


def test_imagenet_v2_index_folders(tmp_path):
    write_imagenet(tmp_path, "index")
    items, names = read_imagenet(tmp_path, "index", "ImageNetV2")
    assert len(names) == 1000
    assert _labels(items) == {"0/img0.jpeg": 0, "0/img1.jpeg": 0, "1/img0.jpeg": 1, "1/img1.jpeg": 1,
                              "999/img0.jpeg": 999, "999/img1.jpeg": 999}


def test_imagenet_o_is_scored_over_its_own_classes(tmp_path):
    write_imagenet(tmp_path, "wnid")
    items, names = read_imagenet(tmp_path, "wnid", "ImageNetO", subset=True)
    assert names == ["tench", "goldfish", "toilet paper"]
    assert sorted(set(_labels(items).values())) == [0, 1, 2]
    assert _labels(items)["n15075141/img1.JPEG"] == 2


def test_folders_that_are_not_imagenet_classes_are_refused(tmp_path):
    write_imagenet(tmp_path, "wnid")
    (tmp_path / "n99999999").mkdir()
    with pytest.raises(DataError, match=r"\['n99999999'\].*not ImageNet-1k classes"):
        read_imagenet(tmp_path, "wnid", "ImageNet")
    with pytest.raises(DataError, match="no class folders"):
        read_imagenet(tmp_path / "n99999999", "wnid", "ImageNet")


@pytest.mark.parametrize("cls,layout,name,classes", [
    (ImageNet, "wnid", "imagenet", 1000), (ImageNetV2, "index", "imagenet_v2", 1000), (ImageNetO, "wnid", "imagenet_o", 3),
])
def test_datamodules_serve_a_classification_set(tmp_path, cls, layout, name, classes):
    write_imagenet(tmp_path, layout)
    data = cls(root=str(tmp_path), image_size=32)
    data.setup("test")
    (eval_set,) = data.eval_sets("test")
    assert (eval_set.name, eval_set.kind, len(eval_set.class_names), len(eval_set.dataset)) == (name, "classification", classes, 6)
    assert eval_set.dataset[0]["image"].shape == (3, 32, 32)


# Folder names whose order as strings differs from their order as numbers ("10" < "2" < "99").
NUMBERED = ("0", "1", "2", "9", "10", "99", "100", "101", "999")


@pytest.mark.parametrize("folders", [NUMBERED, ("2", "10"), ("99", "100", "998", "999")])
def test_imagenet_v2_folders_are_labelled_by_their_number_not_their_string_order(tmp_path, folders):
    for name in folders:
        write_image(tmp_path / name / "a.jpeg")
    items, names = read_imagenet(tmp_path, "index", "ImageNetV2")
    assert _labels(items) == {f"{name}/a.jpeg": int(name) for name in folders}
    assert [names[item.label] for item in items] == [IMAGENET_CLASSNAMES[int(item.id.split("/")[0])] for item in items]


def test_index_folders_scored_as_a_subset_keep_numeric_order(tmp_path):
    for name in NUMBERED:
        write_image(tmp_path / name / "a.jpeg")
    items, names = read_imagenet(tmp_path, "index", "ImageNetV2", subset=True)
    assert names == [IMAGENET_CLASSNAMES[int(n)] for n in NUMBERED]  # NUMBERED is in numeric order
    assert _labels(items) == {f"{name}/a.jpeg": i for i, name in enumerate(NUMBERED)}


@pytest.mark.parametrize("cls,layout,expected,scored", [
    (ImageNetO, "wnid", 200, "3-way over the classes present, not 200-way"),
    (ImageNetV2, "index", 1000, "1000-way on the images of those 3 classes only"),
    (ImageNet, "wnid", 1000, "1000-way on the images of those 3 classes only"),
])
def test_a_partial_copy_says_how_it_is_scored(tmp_path, caplog, cls, layout, expected, scored):
    write_imagenet(tmp_path, layout)
    data = cls(root=str(tmp_path), image_size=32)
    with caplog.at_level(logging.WARNING, logger="mulclip_pl.data.corpora.classification"):
        data.setup("test")
    assert [r.getMessage() for r in caplog.records] == [
        f"{cls.__name__}: {tmp_path} holds 3 of its {expected} class folders ({expected - 3} missing): scored {scored}; "
        "not comparable with full-set numbers"]
    (eval_set,) = data.eval_sets("test")
    assert len(eval_set.class_names) == int(scored.split("-")[0])


def test_a_full_copy_says_nothing(tmp_path, caplog):
    for index in range(1000):
        (tmp_path / str(index)).mkdir()
    write_image(tmp_path / "10" / "a.jpeg")
    with caplog.at_level(logging.WARNING, logger="mulclip_pl.data.corpora.classification"):
        items, names = read_imagenet(tmp_path, "index", "ImageNetV2")
    assert caplog.records == [] and len(names) == 1000 and _labels(items) == {"10/a.jpeg": 10}
