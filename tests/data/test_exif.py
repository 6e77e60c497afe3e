"""Phone photos: every reader turns a JPEG by its EXIF Orientation, as a viewer shows it, and once.

The photo is stored 400x600 (portrait) with Orientation=6 ("turn 90 degrees clockwise"): a viewer
shows it 600x400 with red top-left, green top-right, blue bottom-left and yellow bottom-right.
"""

import json

import numpy as np
import pytest
import torch
from open_clip import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from PIL import Image

from mulclip_pl.data import GenericCaptions
from mulclip_pl.data.corpora.fgovd_datamodule import FGOVD
from mulclip_pl.data.images import load_image
from mulclip_pl.data.prepared.datamodules import Prepared
from mulclip_pl.data.prepared.prepare import prepare
from mulclip_pl.data.shrink import shrink_images
from mulclip_pl.eval import LongCLIPScore
from mulclip_pl.module import MulCLIP
from tests.conftest import TEST_MODEL
from tests.helpers.images import ORIENTATION, QUADRANTS, phone_photo
from tests.helpers.images import looks_upright as quadrants_upright

MEAN, STD = (torch.tensor(v).view(3, 1, 1) for v in (OPENAI_DATASET_MEAN, OPENAI_DATASET_STD))


def pixels(image) -> np.ndarray:
    """(H, W, 3) values 0-255 of a PIL image, a uint8 (3, H, W) tensor or a normalised float one."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.float32)
    if image.dtype != torch.uint8:
        image = (image * STD + MEAN) * 255
    return image.permute(1, 2, 0).float().numpy()


def looks_upright(image) -> bool:
    """Landscape (or square, after a crop) with each quadrant's colour where a viewer shows it."""
    return quadrants_upright(pixels(image))


@pytest.fixture
def photo(tmp_path):
    path = phone_photo(tmp_path / "src" / "images" / "phone.jpg")
    with Image.open(path) as stored:
        assert stored.size == (400, 600) and not looks_upright(stored)  # the file's own pixels lie on their side
    (tmp_path / "src" / "pairs.jsonl").write_text(json.dumps({"id": "p", "image": "images/phone.jpg",
                                                              "caption": "Four squares. Red is top left."}) + "\n")
    return tmp_path / "src"


def _data(folder, **kwargs) -> GenericCaptions:
    return GenericCaptions(train_file=str(folder / "pairs.jsonl"), val_file=str(folder / "pairs.jsonl"),
                           image_size=48, train_augment=False, num_workers=0, **kwargs)


def test_load_image_turns_the_photo_at_full_and_reduced_scale(photo):
    full = load_image(photo / "images" / "phone.jpg", "p")
    assert full.size == (600, 400) and looks_upright(full)
    drafted = load_image(photo / "images" / "phone.jpg", "p", min_side=48)  # JPEG decoded at 1/8 scale
    assert drafted.size == (75, 50) and looks_upright(drafted)


def test_training_and_evaluation_items_are_upright(photo):
    data = _data(photo)
    data.setup("fit")
    assert data.train_set.decode_min_side == 48  # the reduced-scale decode path
    assert looks_upright(data.train_set[0]["image"])  # uint8 pixels
    assert looks_upright(data.eval_sets("val")[0].dataset[0]["image"])  # normalised floats


@pytest.mark.parametrize("min_side", [None, 64])  # original bytes (tag kept), shrunk (turned, no tag)
def test_prepared_rows_are_upright(photo, tmp_path, min_side):
    prepare(data=_data(photo), out=str(tmp_path / "out"), min_side=min_side)
    data = Prepared(path=str(tmp_path / "out"), image_size=48, train_augment=False, num_workers=0)
    data.setup("fit")
    assert looks_upright(data.train_set[0]["image"])


def test_shrunk_copy_is_turned_once(photo, tmp_path):
    shrink_images(str(photo), str(tmp_path / "small"), min_side=64, workers=1)
    with Image.open(tmp_path / "small" / "images" / "phone.jpg") as copy:
        assert copy.size == (96, 64) and copy.getexif().get(ORIENTATION, 1) == 1 and looks_upright(copy)
    assert looks_upright(load_image(tmp_path / "small" / "images" / "phone.jpg", "p"))
    shrink_images(str(photo), str(tmp_path / "same"), min_side=1000, workers=1)  # small enough: copied with its tag
    assert looks_upright(load_image(tmp_path / "same" / "images" / "phone.jpg", "p"))


def test_fgovd_boxes_are_read_on_the_upright_photo(tmp_path):
    phone_photo(tmp_path / "val2017" / "000000000001.jpg")
    row = {"img_path": "000000000001.jpg", "bbox": [320, 20, 260, 160], "pos_expression": ["a green square"],
           "neg_expression": [f"a red square {i}" for i in range(10)]}  # inside 600x400, not inside 400x600
    (tmp_path / "h_attributes_llava.jsonl").write_text(json.dumps(row) + "\n")
    data = FGOVD(root=str(tmp_path), splits=["hard"], box_features="crop", image_size=32, num_workers=0)
    data.setup("test")
    dataset = data.eval_sets("test")[0].dataset
    assert dataset.items[0].image_size == (600, 400)
    colour = pixels(dataset[0]["image"]).reshape(-1, 3).mean(0)
    assert np.abs(colour - QUADRANTS[1]).max() < 20  # the green top-right square


def test_long_clip_score_sees_the_photo_upright(photo):
    torch.manual_seed(0)
    metric = LongCLIPScore(MulCLIP(model_name=TEST_MODEL).eval())
    seen, transform = [], metric.image_transform
    metric.image_transform = lambda image: (seen.append(image), transform(image))[1]
    path = photo / "images" / "phone.jpg"
    with Image.open(path) as opened:
        scores = metric.pair_scores([opened, path], ["four squares", "four squares"])
    assert len(seen) == 2 and all(looks_upright(image) for image in seen)
    torch.testing.assert_close(scores[0], scores[1])
