"""Every PIL mode a data set may hold reaches the model as sensible 8-bit RGB through load_image."""

import numpy as np
import pytest
from PIL import Image

from mulclip_pl.data.images import load_image, to_rgb


def loaded(tmp_path, image: Image.Image, name: str = "x.png") -> np.ndarray:
    image.save(tmp_path / name)
    rgb = load_image(tmp_path / name, name)
    assert rgb.mode == "RGB" and rgb.size == image.size
    return np.asarray(rgb).astype(int)


def test_grayscale_becomes_equal_channels(tmp_path):
    grey = np.arange(0, 256, dtype=np.uint8).reshape(16, 16)
    pixels = loaded(tmp_path, Image.fromarray(grey))
    assert (pixels == grey[..., None]).all()


def test_palette_keeps_its_colours_and_transparent_entries_turn_white(tmp_path):
    palette = Image.new("P", (4, 2))
    palette.putpalette([255, 0, 0, 0, 128, 0, 0, 0, 0] + [0] * (256 - 3) * 3)
    palette.putdata([0, 1, 2, 0, 2, 2, 2, 2])  # row 1: all entry 2
    assert (loaded(tmp_path, palette)[0, :3] == [[255, 0, 0], [0, 128, 0], [0, 0, 0]]).all()
    palette.info["transparency"] = 2  # entry 2 (stored black) is transparent
    pixels = loaded(tmp_path, palette, "t.png")
    assert (pixels[1] == 255).all() and (pixels[0, :2] == [[255, 0, 0], [0, 128, 0]]).all()


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.array([[[0, 0, 255, 255], [0, 0, 0, 0], [0, 0, 0, 128]]], dtype=np.uint8)  # opaque blue, clear, half black
    pixels = loaded(tmp_path, Image.fromarray(rgba, "RGBA"))
    assert (pixels[0, 0] == [0, 0, 255]).all()
    assert (pixels[0, 1] == 255).all()  # transparent black shows the white page, not black
    assert np.abs(pixels[0, 2] - 127).max() <= 1


def test_sixteen_bit_grey_is_scaled_not_clipped_to_white(tmp_path):
    values = np.array([[0, 1000, 40000, 65535]], dtype=np.uint16)  # 8-bit: 1000/257 = 3.9, 40000/257 = 155.6
    deep = Image.fromarray(values)
    assert deep.mode == "I;16"
    pixels = loaded(tmp_path, deep)
    assert Image.open(tmp_path / "x.png").mode == "I;16"  # what the loader really opened
    assert (pixels[0, :, 0] == [0, 4, 156, 255]).all() and (pixels[..., 0] == pixels[..., 2]).all()


@pytest.mark.parametrize("mode", ["I", "LA", "CMYK", "1"])
def test_other_modes_convert_without_error(mode):
    """'I' is how older Pillow opens 16-bit PNGs: the same scale applies."""
    image = Image.fromarray(np.array([[0, 65535]], dtype=np.int32)) if mode == "I" else Image.new(mode, (2, 1))
    rgb = to_rgb(image)
    assert rgb.mode == "RGB" and rgb.size == (2, 1)
    if mode == "I":
        assert np.asarray(rgb)[0, :, 0].tolist() == [0, 255]
