"""Parameters travel inside result PNGs as text chunks, so a downloaded result can be reproduced.

`ResultInfo` is everything a result PNG records besides its pixels; `result_png` is the one
writer of the `studio:*` keys and `read_result_info` the one reader. Beside them goes a
`parameters` chunk in the form AUTOMATIC1111 writes, which the image browsers people already
use (A1111's PNG Info, InvokeAI, SD Prompt Reader) show. Writing goes through Pillow; reading
walks the PNG chunks directly, so metadata can be read without decoding (or trusting the size
of) the pixels. Stdlib and Pillow only.
"""
from __future__ import annotations

import io
import json
import os
import zlib
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, PngImagePlugin

from engine.images import ImageError, read_bytes, to_rgb
from engine.params import Params

PARAMS_KEY = "studio:params"
# The other studio:* keys, by ResultInfo field. JSON-valued fields are encoded as JSON.
_KEYS = {
    "weights": "studio:weights", "device": "studio:device", "evaluation": "studio:evaluation", "timings": "studio:timings",
    "losses": "studio:losses", "content_name": "studio:content_name", "style_names": "studio:style_names",
    "created": "studio:created", "title": "studio:title", "tags": "studio:tags",
}
_JSON_FIELDS = ("timings", "losses", "style_names")
A1111_KEY = "parameters"

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_MODES = {"1", "L", "LA", "P", "RGB", "RGBA", "I;16"}
# Total decompressed text we accept; far above any real params, well below a zip bomb.
_MAX_TEXT = 64 * 1024 * 1024
_DAMAGED = "The PNG file is truncated or damaged."


def png_bytes(img: Image.Image, texts: dict[str, str] | None = None) -> bytes:
    """`img` encoded as PNG with `texts` as text chunks (result_png writes a result's)."""
    texts = texts or {}
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


def save_png(img: Image.Image, path: str | os.PathLike, info: ResultInfo) -> None:
    """Writes result_png(img, info) to `path` (directly; callers that need atomicity rename)."""
    data = result_png(img, info)
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
    """The params JSON stored by result_png, or None when the PNG has none."""
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


@dataclass(frozen=True)
class ResultInfo:
    """What a result PNG says about itself: the params, and how and by whom it was made."""

    params_json: str
    weights_name: str = ""
    weights_sha256: str = ""
    device: str = ""  # where it ran: "cpu", "cuda:0"
    evaluation: str = ""  # how the loss was evaluated when not plain (engine.accel's label)
    timings: dict[str, float] = field(default_factory=dict)
    losses: dict[str, float] = field(default_factory=dict)
    # Set by the gallery, so a result imported elsewhere keeps its names, date and labels.
    content_name: str = ""
    style_names: tuple[str, ...] = ()
    created: str = ""
    title: str = ""
    tags: str = ""

    @classmethod
    def of_result(cls, result: Any, params_json: str, **labels: Any) -> ResultInfo:
        """From an engine.transfer.Result (any object with its attributes) and the params it ran with."""
        return cls(params_json=params_json, weights_name=result.weights_name or "",
                   weights_sha256=result.weights_sha256 or "", device=str(result.device),
                   evaluation=getattr(result, "evaluation", "") or "",
                   timings={k: round(float(v), 3) for k, v in result.timings.items()},
                   losses={k: float(v) for k, v in result.losses.items()}, **labels)

    def texts(self) -> dict[str, str]:
        texts = {PARAMS_KEY: self.params_json}
        if self.weights_name:
            texts[_KEYS["weights"]] = f"{self.weights_name} sha256:{self.weights_sha256}"
        for name, key in _KEYS.items():
            value = getattr(self, name, None)
            if name != "weights" and value:
                texts[key] = json.dumps(list(value) if name == "style_names" else value) \
                    if name in _JSON_FIELDS else str(value)
        texts[A1111_KEY] = self.a1111_parameters()
        return texts

    @classmethod
    def from_texts(cls, texts: dict[str, str]) -> ResultInfo | None:
        """None when the chunks hold no params (not one of ours); bad side values are dropped."""
        if PARAMS_KEY not in texts:
            return None
        weights_name, _, weights_sha = texts.get(_KEYS["weights"], "").partition(" sha256:")
        values: dict[str, Any] = {}
        for name, key in _KEYS.items():
            if name == "weights" or key not in texts:
                continue
            values[name] = _json_field(name, texts[key]) if name in _JSON_FIELDS else texts[key]
        device = values.get("device", "")
        if "evaluation" not in values and device.endswith(")") and " (" in device:
            # Written before studio:evaluation existed: "cpu (channels_last+bf16)".
            values["device"], _, evaluation = device[:-1].partition(" (")
            values["evaluation"] = evaluation
        return cls(params_json=texts[PARAMS_KEY], weights_name=weights_name, weights_sha256=weights_sha, **values)

    def a1111_parameters(self) -> str:
        """The settings as AUTOMATIC1111 writes them: a description line, then `Key: value, ...`."""
        try:
            p = Params.from_json(self.params_json)
        except (ValueError, TypeError):
            return ""
        content = self.content_name or os.path.basename(p.content)
        styles = list(self.style_names) or [os.path.basename(s) for s in p.styles]
        settings = {
            "Steps": p.iterations, "Sampler": p.optimizer, "Seed": p.seed, "Size": p.size,
            "Model": self.weights_name or p.weights, "Model hash": self.weights_sha256[:10],
            "Content weight": p.content_weight, "Style weight": p.style_weight, "TV weight": p.tv_weight,
            "Style blend": " ".join(map(str, p.blend_weights())), "Style scale": p.style_scale,
            "Init": p.init, "Pooling": p.pooling, "Multiscale": p.multiscale,
            "Original colors": p.original_colors, "Device": self.device or p.device,
            "Evaluation": self.evaluation,
        }
        listed = ", ".join(f"{k}: {_a1111_value(v)}" for k, v in settings.items() if v not in ("", None))
        return f"{content or 'photo'} in the style of {', '.join(styles) or 'a painting'}\n{listed}"


def _a1111_value(value: Any) -> str:
    # A1111 quotes a value that holds its separators.
    text = str(value)
    return json.dumps(text) if any(c in text for c in ",:\n") else text


def _json_field(name: str, text: str) -> Any:
    if name != "style_names":
        return json_floats(text)
    try:
        value = json.loads(text)
    except ValueError:
        return ()
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


def json_floats(text: Any) -> dict[str, float]:
    """A JSON object of numbers (losses, timings) as floats; {} for anything else, since the text
    may come from a file someone else wrote."""
    try:
        value = json.loads(text) if isinstance(text, str) and text else {}
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {str(k): float(v) for k, v in value.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def result_png(img: Image.Image, info: ResultInfo) -> bytes:
    """`img` as a PNG carrying `info` (the studio:* keys and A1111's `parameters`)."""
    return png_bytes(img, texts=info.texts())


def read_result_info(source: str | os.PathLike | bytes) -> ResultInfo | None:
    """The ResultInfo of a PNG written by result_png (or by older versions: same keys), None when
    it carries no params. Raises ImageError for anything that is not an intact PNG."""
    return ResultInfo.from_texts(read_metadata(source))
