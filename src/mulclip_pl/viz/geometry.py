"""Where the model's patch grid sits on the original image.

The model never sees a non-square photo whole: open_clip's evaluation transform
(``image_transform(image_size, is_train=False)``, the one ``relevance_maps`` and the datamodules
use) resizes the shorter side to ``image_size`` and centre-crops a square. A patch map therefore
covers only that square. Every overlay and every box score goes through ``crop_box`` so maps and
boxes agree on one geometry.
"""

from __future__ import annotations

Box = tuple[float, float, float, float]  # (x0, y0, x1, y1) in pixels of the original image


def crop_box(width: int, height: int, image_size: int) -> Box:
    """The region of a ``width`` x ``height`` image that the model sees, in its own pixels.

    Mirrors open_clip's eval transform exactly: torchvision ``Resize(image_size)`` (shorter side
    -> image_size, the longer side ``int()``-truncated, edges aligned so the scale per axis is
    old / new size), then ``CenterCrop(image_size)`` with offsets ``int(round((new - size) / 2))``
    (Python's round half to even, as torchvision does). The resized image is never smaller than
    the crop, so no padding happens.
    """
    short, long = min(width, height), max(width, height)
    long_resized = int(image_size * long / short)
    new_w, new_h = (image_size, long_resized) if width <= height else (long_resized, image_size)
    left, top = int(round((new_w - image_size) / 2.0)), int(round((new_h - image_size) / 2.0))
    scale_x, scale_y = width / new_w, height / new_h
    return (left * scale_x, top * scale_y, (left + image_size) * scale_x, (top + image_size) * scale_y)


def box_on_grid(box: Box, crop: Box, grid: tuple[int, int]) -> Box:
    """A box in original-image pixels -> the same box in patch units of the (gh, gw) grid laid on
    ``crop`` (patch (i, j) spans [j, j+1] x [i, i+1]; parts outside the crop fall outside [0, g])."""
    cx0, cy0, cx1, cy1 = crop
    gh, gw = grid
    sx, sy = gw / (cx1 - cx0), gh / (cy1 - cy0)
    x0, y0, x1, y1 = box
    return ((x0 - cx0) * sx, (y0 - cy0) * sy, (x1 - cx0) * sx, (y1 - cy0) * sy)


def visible_share(box: Box, crop: Box) -> float:
    """Share of the model's view that ``box`` covers (the box clipped to the crop): chance for a
    map spread evenly over the patches."""
    width = max(0.0, min(box[2], crop[2]) - max(box[0], crop[0]))
    height = max(0.0, min(box[3], crop[3]) - max(box[1], crop[1]))
    return width * height / ((crop[2] - crop[0]) * (crop[3] - crop[1]))
