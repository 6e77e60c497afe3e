"""Every image file PIL cannot decode is a bad item, never a crash; every odd but valid one loads right.

The files are made in code (``tests/helpers/images.py``). A fit over all of them through the CLI
finishes, lists exactly the broken ones in ``bad_inputs.tsv``, trains on every other one, and never
puts a stand-in next to its own twin in a batch.
"""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from mulclip_pl.cli import main
from mulclip_pl.data.images import load_image
from mulclip_pl.data.prepared.prepare import image_bytes
from mulclip_pl.data.records import ProblemLog
from mulclip_pl.data.shrink import shrink_image
from mulclip_pl.errors import DataError
from tests.callbacks import SeenIndices
from tests.conftest import TEST_MODEL
from tests.helpers.images import broken_images, jpeg_with_bad_exif, looks_upright, odd_images

CAUSES = {"bomb": "PIL.Image.DecompressionBombError: Image size (10000000000 pixels) exceeds limit",
          "truncated": "image file is truncated", "empty": "cannot identify image file",
          "text": "cannot identify image file", "bad_exif": "AttributeError: 'IFDRational' object has no attribute"}


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    return broken_images(tmp_path_factory.mktemp("broken"))


@pytest.fixture(scope="module")
def odd(tmp_path_factory):
    return odd_images(tmp_path_factory.mktemp("odd"))


@pytest.mark.parametrize("min_side", [None, 8])  # full decode, reduced-scale JPEG decode (training)
@pytest.mark.parametrize("name", CAUSES)
def test_a_broken_file_is_a_bad_item_naming_the_file_and_the_cause(broken, name, min_side):
    with pytest.raises(DataError) as error:
        load_image(broken[name], name, min_side)
    message = str(error.value)
    assert message.startswith(f"unreadable image: {broken[name]} (record {name}): ") and "\n" not in message
    assert CAUSES[name] in message


def test_other_malformed_exif_and_a_lowered_pixel_limit_are_bad_items_too(tmp_path, monkeypatch):
    (tmp_path / "tile.jpg").write_bytes(jpeg_with_bad_exif(tag=0x0142))
    with pytest.raises(DataError, match=r"tile.jpg \(record t\): struct.error: required argument is not an integer"):
        load_image(tmp_path / "tile.jpg", "t")
    Image.new("RGB", (32, 32)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 1024 pixels: over twice the limit
    with pytest.raises(DataError, match="DecompressionBombError"):
        load_image(tmp_path / "big.png", "b")


def test_a_bug_of_ours_is_not_called_a_bad_file(odd, monkeypatch):
    monkeypatch.setattr("mulclip_pl.data.images._SIXTEEN_BIT", None)  # `mode in None`: a TypeError in to_rgb
    with pytest.raises(TypeError, match="argument of type 'NoneType'"):
        load_image(odd["one_pixel"][0], "one")


@pytest.mark.parametrize("name", CAUSES)
def test_shrink_and_prepare_report_a_broken_file(broken, name, tmp_path):
    assert shrink_image(broken[name], tmp_path / broken[name].name, min_side=8) == "unreadable"
    problems = ProblemLog("prepare", "skip")
    assert image_bytes(broken[name], 8, name, problems) is None
    assert problems.problems[0][0] == name and CAUSES[name] in problems.problems[0][1]


@pytest.mark.parametrize("training", [False, True])  # training: the reduced-scale JPEG decode path
@pytest.mark.parametrize("name", ["cmyk", "grey16", "palette_transparent", "la", "animated_gif", "one_pixel",
                                  "exif_rotated"])
def test_an_odd_valid_file_loads_as_rgb_upright_with_its_colours(odd, name, training):
    path, size, (x, y), colour = odd[name]
    image = load_image(path, name, min(size) if training else None)
    assert image.mode == "RGB" and image.size == size
    assert np.abs(np.asarray(image)[y, x].astype(int) - colour).max() <= 3, np.asarray(image)[y, x]
    if name == "exif_rotated":
        assert looks_upright(np.asarray(image).astype(np.float32))


def test_the_odd_files_are_what_they_claim(odd):
    expected = {"cmyk": "CMYK", "grey16": "I;16", "palette_transparent": "P", "la": "LA", "animated_gif": "P"}
    for name, mode in expected.items():
        with Image.open(odd[name][0]) as image:
            assert image.mode == mode, name
    with Image.open(odd["animated_gif"][0]) as image:
        assert image.n_frames == 2
    with Image.open(odd["exif_rotated"][0]) as image:
        assert image.size == (40, 60) and image.getexif()[0x0112] == 6


def test_a_fit_over_every_file_lists_the_broken_ones_and_trains_on_the_rest(broken, odd, tmp_path):
    rows = [{"id": name, "image": str(path), "caption": f"A picture called {name}. It is small."}
            for name, path in broken.items()]
    rows += [{"id": name, "image": str(path), "caption": f"A picture called {name}. It is odd."}
             for name, (path, *_) in odd.items()]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))  # 12 rows, 5 broken
    SeenIndices.batches = []
    main(["fit", "--model.model_name", TEST_MODEL, "--model.warmup_steps", "1", "--data", "GenericCaptions",
          "--data.train_file", str(tmp_path / "train.jsonl"), "--data.batch_size", "4", "--data.num_workers", "0",
          "--data.max_sentences", "2", "--trainer.max_epochs", "2", "--trainer.accelerator", "cpu",
          "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
          "--trainer.enable_model_summary", "false", "--trainer.default_root_dir", str(tmp_path),
          "--trainer.callbacks", json.dumps([{"class_path": "tests.callbacks.SeenIndices"}]),
          "--checkpoint.dirpath", str(tmp_path / "ckpt")])
    listed = (tmp_path / "bad_inputs.tsv").read_text().splitlines()
    reasons = dict(line.split("\t") for line in listed[1:])
    assert sorted(reasons) == sorted(broken)  # exactly the broken ones, each once over both epochs
    for name, cause in CAUSES.items():
        assert reasons[name].startswith("unreadable image: ") and cause in reasons[name], name
    assert len(SeenIndices.batches) == 6 and all(len(set(batch)) == 4 for batch in SeenIndices.batches)  # no twins
    seen = {rows[i]["id"] for batch in SeenIndices.batches for i in batch}
    assert seen == set(odd)  # every valid file trained on, no broken one
    assert torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)["global_step"] == 6
