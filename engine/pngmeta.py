"""Parameters travel inside result PNGs as text chunks, so a downloaded result can be reproduced.

Writing goes through Pillow; reading walks the PNG chunks directly, so metadata can be read
without decoding (or trusting the size of) the pixels. Stdlib and Pillow only.
"""
from __future__ import annotations

import io
import os
import zlib

from PIL import Image, PngImagePlugin

from engine.images import ImageError, read_bytes, to_rgb

PARAMS_KEY = "studio:params"

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_MODES = {"1", "L", "LA", "P", "RGB", "RGBA", "I;16"}
# Total decompressed text we accept; far above any real params, well below a zip bomb.
_MAX_TEXT = 64 * 1024 * 1024
_DAMAGED = "The PNG file is truncated or damaged."


def png_bytes(img: Image.Image, params_json: str | None = None,
              extra: dict[str, str] | None = None) -> bytes:
    """`img` encoded as PNG, with `params_json` under PARAMS_KEY and `extra` as more text chunks."""
    texts = dict(extra or {})
    if params_json is not None:
        if PARAMS_KEY in texts:
            raise ValueError(f"{PARAMS_KEY!r} is given both as params_json and in extra")
        texts[PARAMS_KEY] = params_json
    info = PngImagePlugin.PngInfo()
    for key, value in texts.items():
        _check_key(key)
        # iTXt is UTF-8 (tEXt is Latin-1). Uncompressed: Pillow refuses to inflate text chunks
        # above 1 MB, and params are small anyway.
        info.add_itxt(key, value)
    if img.mode not in _PNG_MODES:
        img = to_rgb(img)
    out = io.BytesIO()
    img.save(out, format="PNG", pnginfo=info, optimize=False)
    return out.getvalue()


def save_png(img: Image.Image, path: str | os.PathLike, params_json: str | None = None,
             extra: dict[str, str] | None = None) -> None:
    """Writes png_bytes(...) to `path` (directly; callers that need atomicity rename)."""
    data = png_bytes(img, params_json, extra)
    with open(path, "wb") as f:
        f.write(data)


def read_metadata(source: str | os.PathLike | bytes) -> dict[str, str]:
    """All tEXt, zTXt and iTXt chunks of a PNG (a later chunk wins over an earlier one with the
    same key). Raises ImageError for anything that is not an intact PNG."""
    data = read_bytes(source)
    if not data.startswith(_SIGNATURE):
        raise ImageError("This is not a PNG file.")
    texts: dict[str, str] = {}
    budget = _MAX_TEXT
    pos, n = len(_SIGNATURE), len(data)
    while True:
        if pos + 8 > n:
            raise ImageError(_DAMAGED)  # ended before IEND
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        crc = data[pos + 8 + length:pos + 12 + length]
        if len(crc) != 4 or zlib.crc32(kind + body) != int.from_bytes(crc, "big"):
            raise ImageError(_DAMAGED)
        pos += 12 + length
        if kind == b"IEND":
            return texts
        if kind in (b"tEXt", b"zTXt", b"iTXt"):
            try:
                key, value = _decode_text(kind, body, budget)
            except ImageError:
                raise
            except (ValueError, zlib.error):
                raise ImageError(_DAMAGED) from None
            budget -= len(value)
            texts[key] = value


def read_params_json(source: str | os.PathLike | bytes) -> str | None:
    """The params JSON stored by png_bytes/save_png, or None when the PNG has none."""
    return read_metadata(source).get(PARAMS_KEY)


def _decode_text(kind: bytes, body: bytes, budget: int) -> tuple[str, str]:
    key_bytes, sep, rest = body.partition(b"\x00")
    if not sep or not key_bytes:
        raise ValueError("no keyword")
    key = key_bytes.decode("latin-1")
    if kind == b"tEXt":
        return key, rest.decode("latin-1")
    if kind == b"zTXt":  # compression method byte, then zlib data
        return key, _inflate(rest[1:], budget).decode("latin-1")
    # iTXt: compression flag, method, language tag\0, translated keyword\0, text
    if len(rest) < 2:
        raise ValueError("short iTXt")
    compressed = rest[0]
    _lang, _, rest = rest[2:].partition(b"\x00")
    _translated, _, text = rest.partition(b"\x00")
    raw = _inflate(text, budget) if compressed else text
    return key, raw.decode("utf-8")


def _inflate(data: bytes, budget: int) -> bytes:
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, budget + 1)  # bounded: a small chunk may inflate to gigabytes
    if len(out) > budget:
        raise ImageError("The PNG file's text is too large.")
    return out


def _check_key(key: str) -> None:
    # PNG keywords: 1-79 Latin-1 characters, printable, no leading/trailing/double spaces.
    ok = (isinstance(key, str) and 1 <= len(key) <= 79 and key == key.strip() and "  " not in key
          and all(32 <= ord(c) <= 126 or 161 <= ord(c) <= 255 for c in key))
    if not ok:
        raise ValueError(f"invalid PNG text key {key!r}")
