"""Load and validate user images: anything a person uploads becomes a plain RGB `PIL.Image`, or an
`ImageError` with one sentence they can act on.

Stdlib and Pillow only: the web UI imports this at start-up.
"""
from __future__ import annotations

import io
import os
import re
import stat
import warnings

from PIL import Image, ImageOps

__all__ = ["MAX_BYTES", "MAX_PIXELS", "ImageError", "fit_within", "load_image",
           "read_bytes", "resize_longest", "sniff", "to_rgb"]

MAX_PIXELS = 40_000_000
MAX_BYTES = 50 * 1024 * 1024

_FORMAT_LIST = "JPEG, PNG, GIF, WebP, TIFF or BMP"
_DAMAGED = "The image file is truncated or damaged."
# What Pillow raises for bad data, depending on format and stage.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError,
                  Image.DecompressionBombError)
_BMP_HEADER_SIZES = {12, 16, 40, 52, 56, 64, 108, 124}


class ImageError(ValueError):
    """An image we cannot use; the message is one short sentence for a person."""


def sniff(data: bytes) -> str | None:
    """The Pillow format name of `data` from its magic bytes, if it is one we accept."""
    head = bytes(data[:32])
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):  # classic and BigTIFF
        return "TIFF"
    # "BM" alone would also match text files starting with "BM"; the DIB header size pins it down.
    if head[:2] == b"BM" and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES:
        return "BMP"
    return None


def load_image(source: str | os.PathLike | bytes, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """A fully decoded RGB image from a path or the file's bytes; raises ImageError.

    The file name is never consulted: the format comes from the content. EXIF orientation is
    applied, transparency is composited over white, animations give their first frame.
    """
    data = read_bytes(source)
    fmt = sniff(data)
    if fmt is None:
        raise ImageError(_not_an_image(data))
    try:
        # Our own bound, checked below, replaces Pillow's warning (which would otherwise fire for
        # images we are about to refuse anyway). Only the header is parsed inside this block.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=[fmt])
    except Image.DecompressionBombError as e:
        # Pillow's own, coarser bound (2 × Image.MAX_IMAGE_PIXELS); its message has the count.
        found = re.search(r"\((\d+) pixels\)", str(e))
        size = f": {_pixels(int(found.group(1)))}" if found else ""
        raise ImageError(f"The image is too large{size}; the limit is {_pixels(max_pixels)}.") from None
    except _DECODE_ERRORS:
        raise ImageError(_not_an_image(data) if _text_kind(data) else _DAMAGED) from None

    animated = getattr(img, "is_animated", False)  # asked before decoding: it may seek
    width, height = img.size
    if width < 1 or height < 1:
        raise ImageError(_DAMAGED)
    if width * height > max_pixels:
        raise ImageError(f"The image is too large: {width}×{height} pixels; "
                         f"the limit is {_pixels(max_pixels)}.")
    # Someone in the process may have set ImageFile.LOAD_TRUNCATED_IMAGES, which makes Pillow
    # fill missing data with grey instead of failing; check the container ourselves.
    if not _complete(fmt, data):
        raise ImageError(_DAMAGED)
    try:
        img.load()
    except _DECODE_ERRORS:
        raise ImageError(_DAMAGED) from None

    try:
        ImageOps.exif_transpose(img, in_place=True)
    except _DECODE_ERRORS:
        pass  # unreadable EXIF: the pixels are fine, show them as stored
    try:
        rgb = to_rgb(img)
    except _DECODE_ERRORS:
        raise ImageError(f"This image uses a colour mode we cannot convert ({img.mode}).") from None
    if rgb is img and animated:
        rgb = img.copy()  # a plain image: does not keep the whole animation (and its file) alive
    return rgb


def to_rgb(img: Image.Image) -> Image.Image:
    """`img` as RGB: transparency over white, high bit depths scaled (not clipped) to 8 bits.
    Returns `img` itself when it is RGB already."""
    mode = img.mode
    if mode == "RGB" and "transparency" not in img.info:
        return img
    if mode.startswith("I;16"):
        img = img.convert("I").point(lambda v: v * (1 / 257) + 0.5).convert("L")
    elif mode in ("I", "F"):
        img = _scale_to_l(img)
    elif mode == "La":
        # Premultiplied alpha; Pillow only un-premultiplies RGBa, so go through it.
        lum, alpha = img.split()
        img = Image.merge("RGBa", (lum, lum, lum, alpha))
    if img.has_transparency_data:
        rgba = img.convert("RGBA")
        white = Image.new("RGB", img.size, (255, 255, 255))
        white.paste(rgba, mask=rgba.getchannel("A"))
        return white
    return img.convert("RGB")


def _scale_to_l(img: Image.Image) -> Image.Image:
    """32-bit integer and float images have no fixed range: guess it from the values."""
    lo, hi = img.getextrema()
    # One band, so two numbers (Pillow's type also covers a pair per band of a multi-band image).
    assert isinstance(lo, (int, float)) and isinstance(hi, (int, float))
    if img.mode == "I" and lo >= 0 and hi <= 255:
        scale, offset = 1.0, 0.0
    elif img.mode == "I" and lo >= 0 and hi <= 65535:  # 16-bit data stored in 32 bits
        scale, offset = 1 / 257, 0.0
    elif img.mode == "F" and lo >= 0 and hi <= 1:
        scale, offset = 255.0, 0.0
    elif lo >= 0 and hi <= 255:
        scale, offset = 1.0, 0.0
    elif hi > lo:
        scale, offset = 255 / (hi - lo), -lo * 255 / (hi - lo)
    else:
        scale, offset = 0.0, 0.0
    return img.point(lambda v: v * scale + offset + 0.5).convert("L")


def fit_within(width: int, height: int, longest: int, min_side: int = 16) -> tuple[int, int]:
    """The size with the aspect ratio of `width`×`height` whose longest side is `longest`.

    Raises ImageError when the short side would end up below `min_side`."""
    if longest < 1:
        raise ValueError(f"longest must be at least 1, got {longest}")
    if width < 1 or height < 1:
        raise ImageError(f"The image has no pixels: {width}×{height}.")
    long_side, short_side = max(width, height), min(width, height)
    # Integer rounding (half up) so results are the same everywhere.
    short_new = max(1, (2 * short_side * longest + long_side) // (2 * long_side))
    size = (longest, short_new) if width >= height else (short_new, longest)
    if short_new < min_side:
        what = "narrow" if width < height else "short"
        raise ImageError(f"The image is too {what} for this size: {width}×{height} pixels would become "
                         f"{size[0]}×{size[1]}; the short side must be at least {min_side} pixels.")
    return size


def resize_longest(img: Image.Image, longest: int, *, min_side: int = 16) -> Image.Image:
    """A copy of `img` scaled so its longest side is `longest` (see fit_within)."""
    size = fit_within(img.width, img.height, longest, min_side)
    if size == img.size:
        return img.copy()
    if longest < max(img.size):
        # reducing_gap: box-reduce first, then Lanczos; visually the same, much faster on big photos.
        return img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return img.resize(size, Image.Resampling.BICUBIC)


def read_bytes(source: str | os.PathLike | bytes) -> bytes:
    """The file's bytes, at most MAX_BYTES; raises ImageError for empty, missing or huge files
    and for anything that is not a regular file. Every input file is read through here: a FIFO
    would hang the reader, /dev/zero or a sparse file would fill its memory."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        data = _read_regular_file(source)
    else:
        raise TypeError(f"expected a path or bytes, got {type(source).__name__}")
    if not data:
        raise ImageError("This file is empty.")
    if len(data) > MAX_BYTES:
        raise ImageError(f"The file is too large; the limit is {MAX_BYTES // (1024 * 1024)} MB.")
    return data


def _read_regular_file(path: str | os.PathLike) -> bytes:
    name = os.path.basename(os.fspath(path))
    try:
        # Non-blocking: opening a FIFO for reading would otherwise wait for a writer for good.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ImageError(f"The file {name} was not found.") from None
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
        raise ImageError(f"The file {name} cannot be read ({getattr(e, 'strerror', None) or e}).") from None
    info = os.fstat(fd)
    problem = (f"{name} is a folder, not an image file." if stat.S_ISDIR(info.st_mode) else
               f"{name} is not a regular file." if not stat.S_ISREG(info.st_mode) else
               f"The file is too large; the limit is {MAX_BYTES // (1024 * 1024)} MB." if info.st_size > MAX_BYTES
               else None)
    if problem:
        os.close(fd)
        raise ImageError(problem)
    with os.fdopen(fd, "rb") as f:
        try:
            return f.read(MAX_BYTES + 1)  # bounded: the file may grow after the size was read
        except OSError as e:
            raise ImageError(f"The file {name} cannot be read ({e.strerror or e}).") from None


def _complete(fmt: str, data: bytes) -> bool:
    """Whether a JPEG or PNG container reaches its end marker (other formats: not checked)."""
    if fmt == "PNG":
        pos = 8
        while pos + 8 <= len(data):
            length = int.from_bytes(data[pos:pos + 4], "big")
            kind = data[pos + 4:pos + 8]
            pos += 12 + length  # length, type, data, CRC
            if pos > len(data):
                return False
            if kind == b"IEND":
                return True
        return False
    if fmt == "JPEG":
        # Walk the segments (skipping their payloads, so an EXIF thumbnail's end marker does not
        # count) and the entropy-coded data, where 0xFF is followed by 0x00 or a restart marker.
        pos, n = 2, len(data)
        while True:
            pos = data.find(b"\xff", pos)
            while 0 <= pos < n - 1 and data[pos + 1] == 0xFF:  # fill bytes
                pos += 1
            if pos < 0 or pos >= n - 1:
                return False
            marker = data[pos + 1]
            if marker == 0xD9:  # EOI
                return True
            if marker in (0x00, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
                pos += 2
                continue
            if pos + 4 > n:
                return False
            pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
    return True


def _text_kind(data: bytes) -> str | None:
    """'HTML', 'SVG', 'XML' or 'text' when `data` looks like a text file, else None."""
    head = data[:2048]
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    if b"\x00" in head:
        return None
    try:
        # Cutting at 2048 bytes may split a character; allow a few bytes of slack at the end.
        text = head.decode("utf-8") if len(data) <= 2048 else head[:-4].decode("utf-8")
    except UnicodeDecodeError:
        return None
    lower = text.lstrip().lower()
    if "<svg" in lower:
        return "SVG"
    if lower.startswith(("<!doctype html", "<html", "<head", "<body")) or "<html" in lower:
        return "HTML"
    if lower.startswith("<"):
        return "XML"
    return "text"


def _not_an_image(data: bytes) -> str:
    kind = _text_kind(data)
    if kind:
        return f"This is not an image we can read (looks like {kind})."
    if data[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypavif", b"ftypavis"):
        return f"HEIC/AVIF images are not supported; please convert it to {_FORMAT_LIST}."
    if data.startswith(b"%PDF"):
        return f"This is a PDF, not an image; please use {_FORMAT_LIST}."
    return f"This is not an image we can read; please use {_FORMAT_LIST}."


def _pixels(n: int) -> str:
    return f"{n / 1e6:g} megapixels" if n >= 1_000_000 else f"{n:,} pixels"

