"""Image files made in code: the broken ones PIL cannot decode and the odd ones it can.

``broken_images`` writes one file per way a real data set breaks (each must become a bad item,
never a crash); ``odd_images`` one per valid file that a bare ``convert("RGB")`` gets wrong or a
narrow reader refuses, with what it must load as: its upright size and a pixel's colour.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image

ORIENTATION = ExifTags.Base.Orientation
QUADRANTS = [(220, 30, 30), (30, 200, 30), (30, 30, 220), (230, 220, 40)]  # TL, TR, BL, BR as a viewer shows them


def phone_photo(path: Path, size=(600, 400)) -> Path:
    """A picture of four coloured quadrants (``QUADRANTS``), stored turned a quarter left with the
    EXIF Orientation (6) that turns it back, as a phone writes it."""
    width, height = size
    picture = Image.new("RGB", size)
    for k, colour in enumerate(QUADRANTS):
        left, top = (k % 2) * width // 2, (k // 2) * height // 2
        picture.paste(colour, (left, top, left + width // 2, top + height // 2))
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.transpose(Image.Transpose.ROTATE_90).save(path, quality=95, exif=exif.tobytes())
    return path


def looks_upright(values: np.ndarray) -> bool:
    """(H, W, 3) values 0-255: landscape (or square, after a crop), each quadrant's colour where a viewer shows it."""
    height, width = values.shape[:2]
    centres = [(height // 4, width // 4), (height // 4, 3 * width // 4), (3 * height // 4, width // 4),
               (3 * height // 4, 3 * width // 4)]
    found = [values[y - 1:y + 2, x - 1:x + 2].reshape(-1, 3).mean(0) for y, x in centres]
    return width >= height and all(np.abs(f - c).max() < 40 for f, c in zip(found, QUADRANTS))


def broken_images(folder: Path) -> dict[str, Path]:
    """name -> a file PIL cannot decode, each in its own way."""
    folder.mkdir(parents=True, exist_ok=True)
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8))
    whole = io.BytesIO()
    noise.save(whole, "JPEG", quality=95)
    files = {
        "bomb": ("bomb.png", huge_png_header(100_000, 100_000)),  # 10^10 pixels: PIL refuses to allocate them
        "truncated": ("truncated.jpg", whole.getvalue()[: len(whole.getvalue()) // 2]),
        "empty": ("empty.jpg", b""),
        "text": ("text.jpg", b"This is a caption file saved under an image's name.\n"),
        "bad_exif": ("bad_exif.jpg", jpeg_with_bad_exif()),
    }
    for name, data in files.values():
        (folder / name).write_bytes(data)
    return {key: folder / name for key, (name, _) in files.items()}


def huge_png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels and holds none: a decompression bomb's header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def jpeg_with_bad_exif(tag: int = 0x014D) -> bytes:
    """A phone photo (Orientation 6) whose EXIF block stores a rational under a tag defined as text
    (0x014D, InkNames; 0x0142, TileWidth, a long, breaks it another way): PIL reads the block, then
    fails writing it back after the turn."""
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    exif[ExifTags.Base.XResolution] = 72.0
    raw = exif.tobytes()
    rational = struct.pack(">HH", ExifTags.Base.XResolution, 5)  # tag, type RATIONAL (big-endian block)
    assert rational in raw
    buffer = io.BytesIO()
    broken = raw.replace(rational, struct.pack(">HH", tag, 5))
    Image.new("RGB", (16, 12), (200, 30, 30)).save(buffer, "JPEG", exif=broken)
    return buffer.getvalue()


def odd_images(folder: Path) -> dict[str, tuple[Path, tuple[int, int], tuple[int, int], tuple[int, int, int]]]:
    """name -> (file, upright (width, height), an (x, y), the RGB colour loaded there)."""
    folder.mkdir(parents=True, exist_ok=True)
    cases = {}

    def add(name, image, filename, size, where, colour, **save):
        image.save(folder / filename, **save)
        cases[name] = (folder / filename, size, where, colour)

    add("cmyk", Image.new("CMYK", (20, 10), (0, 255, 255, 0)), "cmyk.jpg", (20, 10), (5, 5), (255, 0, 0), quality=95)
    deep = Image.fromarray(np.full((6, 8), 40000, dtype=np.uint16))  # 16-bit grey: 40000 / 257 = 155.6
    assert deep.mode == "I;16"
    add("grey16", deep, "grey16.png", (8, 6), (3, 3), (156, 156, 156))
    palette = Image.new("P", (5, 3), 1)
    palette.putpalette([0, 0, 0, 0, 128, 0] + [0] * 254 * 3)
    palette.putpixel((0, 0), 0)
    palette.info["transparency"] = 0  # entry 0 (stored black) is transparent: white, as a viewer shows it
    add("palette_transparent", palette, "palette.png", (5, 3), (0, 0), (255, 255, 255))
    add("la", Image.new("LA", (7, 4), (100, 255)), "la.png", (7, 4), (3, 2), (100, 100, 100))
    frames = [Image.new("RGB", (9, 7), colour) for colour in [(250, 0, 0), (0, 0, 250)]]
    add("animated_gif", frames[0], "animated.gif", (9, 7), (4, 3), (250, 0, 0), save_all=True,
        append_images=frames[1:], duration=100, loop=0)
    add("one_pixel", Image.new("RGB", (1, 1), (10, 20, 30)), "one.png", (1, 1), (0, 0), (10, 20, 30))
    phone_photo(folder / "rotated.jpg", size=(60, 40))  # stored 40x60
    cases["exif_rotated"] = (folder / "rotated.jpg", (60, 40), (15, 10), QUADRANTS[0])
    return cases
