"""Maps and boxes sit on the square open_clip's eval transform keeps, in original-image pixels."""

import numpy as np
import pytest
import torch
from open_clip import image_transform
from PIL import Image, ImageDraw

from mulclip_pl.viz.attention import Explanation, localization_scores, mass_in_box, plot_relevance
from mulclip_pl.viz.geometry import crop_box, visible_share

# By hand, model input 32 px (the test model), open_clip eval: Resize(32, shorter side) then CenterCrop(32).
# Wide 640x427: 427 -> 32, 640 -> int(32 * 640 / 427) = int(47.96) = 47; left = round(7.5) = 8 (half to even),
# so the crop spans resized x 8..40, i.e. original x 8 * 640/47 .. 40 * 640/47, and all of y.
WIDE, WIDE_CROP = (640, 427), (8 * 640 / 47, 0.0, 40 * 640 / 47, 427.0)
# Tall 300x500: 300 -> 32, 500 -> int(53.33) = 53; top = round(10.5) = 10 (half to even): y 10*500/53 .. 42*500/53.
TALL, TALL_CROP = (300, 500), (0.0, 10 * 500 / 53, 300.0, 42 * 500 / 53)
# One hot patch on the 4x4 grid, its centre in original pixels by hand, where the old full-image stretch
# put it, and a box around the whole true patch (x 436-545, y 107-213 wide; x 75-150, y 321-396 tall)
# that excludes the stretched spot.
CASES = {
    "wide": dict(size=WIDE, crop=WIDE_CROP, patch=(1, 3), box=(430, 100, 550, 220),
                 spot=(WIDE_CROP[0] + 3.5 * (WIDE_CROP[2] - WIDE_CROP[0]) / 4, 1.5 * 427 / 4),  # (490.2, 160.1)
                 stretched=(3.5 * 640 / 4, 1.5 * 427 / 4)),
    "tall": dict(size=TALL, crop=TALL_CROP, patch=(3, 1), box=(70, 315, 155, 405),
                 spot=(1.5 * 300 / 4, TALL_CROP[1] + 3.5 * (TALL_CROP[3] - TALL_CROP[1]) / 4),  # (112.5, 358.5)
                 stretched=(1.5 * 300 / 4, 3.5 * 500 / 4)),
}


@pytest.mark.parametrize("size, expected", [(WIDE, WIDE_CROP), (TALL, TALL_CROP), ((64, 64), (0, 0, 64, 64)),
                                            ((16, 16), (0, 0, 16, 16))])
def test_crop_box_known_answer(size, expected):
    assert crop_box(*size, image_size=32) == pytest.approx(expected)


@pytest.mark.parametrize("size", [WIDE, TALL, (101, 37), (37, 101)])
def test_crop_box_matches_open_clips_eval_transform(size):
    """A white rectangle's centre of mass after the real transform is where crop_box maps it (a one-pixel
    slip of the crop offset moves it by ~1 output pixel)."""
    width, height = size
    rect = (0.4 * width, 0.42 * height, 0.56 * width, 0.55 * height)  # well inside the crop
    image = Image.new("L", size, 0)
    ImageDraw.Draw(image).rectangle([round(v) for v in rect], fill=255)
    x0, y0, x1, y1 = [round(v) for v in rect]
    x1, y1 = x1 + 1, y1 + 1  # PIL's rectangle includes its end pixel: edges in pixel-edge coordinates
    pixels = image_transform(32, is_train=False, mean=(0.0,) * 3, std=(1.0,) * 3)(image.convert("RGB"))[0].numpy()
    ys, xs = np.mgrid[:32, :32] + 0.5
    centre = ((pixels * xs).sum() / pixels.sum(), (pixels * ys).sum() / pixels.sum())
    cx0, cy0, cx1, cy1 = crop_box(width, height, 32)
    expected = (((x0 + x1) / 2 - cx0) * 32 / (cx1 - cx0), ((y0 + y1) / 2 - cy0) * 32 / (cy1 - cy0))
    assert centre == pytest.approx(expected, abs=0.15)


def hot_explanation(case) -> Explanation:
    sap = torch.full((2, 4, 4), 1 / 16)
    sap[1] = 0
    sap[1][case["patch"]] = 1.0
    return Explanation(["The scene.", "The thing."], sap, sap.clone(), 0.5, crop_box(*case["size"], 32), case["size"])


def rendered_rgb(figure, ax, point) -> np.ndarray:
    figure.canvas.draw()
    buffer = np.asarray(figure.canvas.buffer_rgba())
    x, y = ax.transData.transform(point)
    return buffer[buffer.shape[0] - int(round(y)), int(round(x)), :3].astype(int)


@pytest.mark.parametrize("name", ["wide", "tall"])
def test_hot_patch_is_drawn_and_scored_where_the_transform_put_it(name):
    case = CASES[name]
    explanation = hot_explanation(case)
    assert explanation.crop == pytest.approx(case["crop"])
    figure = plot_relevance(Image.new("RGB", case["size"], (255, 255, 255)), explanation)
    ax = next(a for a in figure.axes if a.get_title() == "The thing.")
    x0, y0, x1, y1 = case["crop"]
    assert ax.images[1].get_extent() == pytest.approx([x0, x1, y1, y0])
    assert ax.get_xlim() == pytest.approx((0, case["size"][0])) and ax.get_ylim() == pytest.approx((case["size"][1], 0))
    hot = rendered_rgb(figure, ax, case["spot"])
    assert hot[0] > hot[2] + 40  # jet's top end (dark red at alpha 0.45 on white: R 197, B 140) on the spot
    stretched = rendered_rgb(figure, ax, case["stretched"])  # where the old full-image stretch drew it
    assert stretched.max() - stretched.min() <= 2 and stretched.max() < 130  # a dimmed margin, no heat
    assert "cropped away" in figure._suptitle.get_text()
    assert mass_in_box(explanation.sap[1], case["box"], explanation.crop) == 1.0
    assert localization_scores([explanation], [[{"box": case["box"]}]])["sap"] == 1.0
    x, y = case["stretched"]
    assert mass_in_box(explanation.sap[1], (x - 5, y - 5, x + 5, y + 5), explanation.crop) == 0.0


def test_square_image_says_the_model_saw_all_of_it():
    maps = torch.ones(1, 4, 4) / 16
    explanation = Explanation(["A."], maps, maps, 0.1, crop_box(64, 64, 32), (64, 64))
    assert "whole image" in plot_relevance(Image.new("RGB", (64, 64)), explanation)._suptitle.get_text()
    with pytest.raises(ValueError, match="64x64 image but a 640x427"):
        plot_relevance(Image.new("RGB", WIDE), explanation)


def test_chance_counts_only_the_part_of_a_box_the_model_saw():
    crop = crop_box(*WIDE, 32)
    assert visible_share((0, 0, 640, 427), crop) == pytest.approx(1.0)
    assert visible_share((0, 0, crop[0], 427), crop) == 0.0  # all in the cropped margin
    assert visible_share((crop[0], 0, (crop[0] + crop[2]) / 2, 427), crop) == pytest.approx(0.5)
