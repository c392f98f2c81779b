"""Awkward image files and small clips, generated with Pillow so nothing binary is committed."""
from __future__ import annotations

import io
import random
import struct
import zlib

from PIL import Image

from engine.clips import Clip
from harness.paths import CONTENT


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


def pan(frames: int = 4, durations_ms: tuple[int, ...] = (90, 110)) -> Clip:
    """A known pan over the content photo, 96×72 (4 px further right each frame), with the
    durations taken in turn."""
    photo = Image.open(CONTENT).convert("RGB").resize((240, 180))
    return Clip([photo.crop((30 + 4 * k, 40, 30 + 4 * k + 96, 40 + 72)) for k in range(frames)],
                [durations_ms[k % len(durations_ms)] for k in range(frames)])
