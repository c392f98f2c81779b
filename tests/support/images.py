"""Awkward image files, generated with Pillow so nothing binary is committed."""
from __future__ import annotations

import io
import random
import struct
import zlib

from PIL import Image


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **kw)
    return out.getvalue()


def noisy(size: tuple[int, int] = (64, 48)) -> Image.Image:
    """Incompressible content, so a cut file really misses pixel data."""
    return Image.frombytes("RGB", size, random.Random(0).randbytes(size[0] * size[1] * 3))


def png_with_header(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims width×height (the pixel data is a few bytes)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


def with_orientation(img: Image.Image, orientation: int) -> bytes:
    """A JPEG whose EXIF says to show it rotated or mirrored."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(img, "JPEG", exif=exif, quality=95)
