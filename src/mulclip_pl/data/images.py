"""Opening image files: RGB, upright, and every file PIL cannot decode reported as a bad item.

PIL has no single decoding error. Besides ``UnidentifiedImageError`` / ``OSError`` (unknown format,
truncated data) and ``SyntaxError`` (broken PNG chunks), its decoders and EXIF parser raise
``Image.DecompressionBombError``, ``ValueError``, ``struct.error``, ``TypeError``, even
``AttributeError`` on malformed files (a fuzzed EXIF block of a phone photo raises the last three
in ``exif_transpose``). So an error is a decoding failure when it is one of the I/O kinds or was
raised inside PIL, below our own code; an error raised in our own code is a bug and propagates.
"""

from __future__ import annotations

from types import TracebackType

import numpy as np
from PIL import Image, ImageOps

from mulclip_pl.errors import DataError


def load_image(path, record_id: str, min_side: int | None = None) -> Image.Image:
    """Open an image as RGB, upright; errors name the file, the record and the problem.

    Upright: a phone photo stores its pixels as the sensor saw them and an EXIF Orientation tag
    saying how to turn them; viewers apply it, so captions describe the turned picture
    (``upright``).

    ``min_side``: let the JPEG decoder work at 1/2, 1/4 or 1/8 scale while the shorter side stays
    >= min_side (several times faster for large photos; pixels differ slightly from a full decode,
    so it is used for training only, never for evaluation).
    """
    try:
        with Image.open(path) as image:
            if min_side:
                scale = min(image.size) / min_side
                image.draft("RGB", (max(1, round(image.size[0] / scale)), max(1, round(image.size[1] / scale))))
            return to_rgb(upright(image))
    except FileNotFoundError as exc:
        raise DataError(f"missing image: {path} (record {record_id})") from exc
    except Exception as exc:
        if not is_decoding_error(exc):
            raise
        raise DataError(f"unreadable image: {path} (record {record_id}): {decoding_cause(exc)}") from exc


def is_decoding_error(exc: BaseException) -> bool:
    """True when ``exc`` says a file cannot be decoded (see the module docstring), False for a bug of ours."""
    if isinstance(exc, (OSError, SyntaxError, Image.DecompressionBombError)):  # UnidentifiedImageError: an OSError
        return True
    return isinstance(exc, Exception) and _raised_in_pil(exc.__traceback__)


def decoding_cause(exc: BaseException) -> str:
    """The cause on one line: PIL's own words for the I/O kinds, the error's type before the others'
    (``struct.error: required argument is not an integer`` says more than its message alone)."""
    if isinstance(exc, (OSError, SyntaxError)):
        return str(exc)
    kind = type(exc)
    name = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__name__}"
    return f"{name}: {exc}".replace("\n", " ")


def _raised_in_pil(traceback: TracebackType | None) -> bool:
    """Whether the frame our code called last, on the way to the error, is PIL's: the error came from
    decoding, not from our code (frames of the caller, a test say, before ours do not count)."""
    modules = []
    while traceback is not None:
        modules.append(traceback.tb_frame.f_globals.get("__name__", ""))
        traceback = traceback.tb_next
    ours = [i for i, module in enumerate(modules) if module.startswith("mulclip_pl.")]
    below = ours[-1] + 1 if ours else 0
    return below < len(modules) and modules[below].split(".")[0] == "PIL"


def upright(image: Image.Image) -> Image.Image:
    """The image as a viewer shows it: its EXIF Orientation applied (the image itself without the tag)."""
    if image.getexif().get(_EXIF_ORIENTATION, 1) in (0, 1):
        return image  # nothing to turn: no copy
    return ImageOps.exif_transpose(image)


_EXIF_ORIENTATION = 0x0112


_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # PNG/TIFF 16-bit grey ("I": 32-bit int holding it)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB as a viewer would show it.

    A bare ``convert("RGB")`` clips 16-bit grey to white and drops alpha onto whatever colour the
    transparent pixels happen to store (often black), so: 16-bit values are scaled to 8 bits
    (65535 -> 255) and transparent images are composited on white.
    """
    if image.mode in _SIXTEEN_BIT:
        pixels = np.asarray(image).astype(np.float32)
        image = Image.fromarray((np.clip(pixels, 0, 65535) / 257).round().astype(np.uint8))  # mode L
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return image.convert("RGB")
