"""engine.images: every awkward file is generated with Pillow (here and in support.images); nothing
binary is committed."""
from __future__ import annotations

import io
import struct
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from PIL import Image, ImageCms, ImageFile

from engine.images import MAX_PIXELS, ImageError, fit_within, load_image, resize_longest, sniff, to_rgb
from harness.paths import ROOT, TEST_IMAGES
from support.images import encode, noisy, png_with_header, with_orientation

RED, WHITE = (255, 0, 0), (255, 255, 255)


# --- refused inputs -------------------------------------------------------------------------

def test_zero_bytes(tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        load_image(tmp_path / "empty.png")
    with pytest.raises(ImageError, match="empty"):
        load_image(b"")


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "noise.jpg"
    path.write_bytes(bytes((i * 193 + 71) % 256 for i in range(4096)) + b"\x00")
    with pytest.raises(ImageError, match="not an image"):
        load_image(path)


@pytest.mark.parametrize("name, text, kind", [
    ("page.png", b"<!DOCTYPE html><html><body>404 Not Found</body></html>", "HTML"),
    ("drawing.png", b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', "SVG"),
    ("notes.jpg", "hello, wörld\n".encode() * 50, "text"),
    ("bmw.bmp", b"BMW is a car maker, not a bitmap.\n", "text"),
])
def test_text_named_as_image(tmp_path: Path, name: str, text: bytes, kind: str) -> None:
    (tmp_path / name).write_bytes(text)
    with pytest.raises(ImageError, match=f"not an image we can read \\(looks like {kind}\\)"):
        load_image(tmp_path / name)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)


def test_only_regular_files_are_read_and_never_more_than_the_limit(tmp_path: Path) -> None:
    """Every input file goes through engine.images.read_bytes. Before, the gallery read a path
    it was given whole (Path.read_bytes): a FIFO hung the reader for good, /dev/zero filled its
    memory, and a 300 MB sparse file was read whole before it was refused."""
    import os
    import threading

    from engine.images import MAX_BYTES, read_bytes

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    outcome: list[str] = []
    reader = threading.Thread(target=lambda: outcome.append(_message(read_bytes, fifo)), daemon=True)
    reader.start()
    reader.join(5)
    if reader.is_alive():  # unblock the old code's open() so the test run can go on
        with open(fifo, "wb"):
            pass
    assert outcome == ["pipe is not a regular file."]
    assert _message(read_bytes, "/dev/zero") == "zero is not a regular file."
    sparse = tmp_path / "sparse.png"
    with open(sparse, "wb") as f:
        f.truncate(300 * 1024 * 1024)
    assert "too large" in _message(read_bytes, sparse)  # from its size, before a byte is read
    exact = tmp_path / "exact.bin"
    exact.write_bytes(b"x" * 10)
    assert read_bytes(exact) == b"x" * 10 and MAX_BYTES > 10


def _message(read, path) -> str:
    try:
        read(path)
    except ImageError as e:
        return str(e)
    return "read"


def test_too_many_bytes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("engine.images.MAX_BYTES", 1000)
    data = encode(noisy(), "PNG")
    assert len(data) > 1000
    (tmp_path / "big.png").write_bytes(data)
    with pytest.raises(ImageError, match="too large"):
        load_image(tmp_path / "big.png")
    with pytest.raises(ImageError, match="too large"):
        load_image(data)


@pytest.mark.parametrize("fmt, kw", [("JPEG", {}), ("JPEG", {"progressive": True}), ("PNG", {})])
def test_truncated(fmt: str, kw: dict) -> None:
    data = encode(noisy(), fmt, **kw)
    for cut in (len(data) // 2, len(data) - 2, 60):
        with pytest.raises(ImageError, match="truncated or damaged"):
            load_image(data[:cut])


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_even_with_pillows_load_truncated_images(monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    data = encode(noisy(), fmt)
    with pytest.raises(ImageError, match="truncated or damaged"):
        load_image(data[: len(data) * 2 // 3])
    assert load_image(data).size == (64, 48)


def test_truncated_jpeg_with_exif_thumbnail_is_still_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # The embedded thumbnail has its own end marker, early in the file.
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    # Pillow cannot write EXIF thumbnails, so splice a whole JPEG (with its end marker) into APP1.
    main = encode(noisy(), "JPEG")
    app1 = b"Exif\x00\x00" + encode(noisy((16, 12)), "JPEG")
    spliced = main[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + main[2:]
    assert load_image(spliced).size == (64, 48)
    with pytest.raises(ImageError, match="truncated or damaged"):
        load_image(spliced[: len(spliced) - 200])


def test_damaged_png_crc() -> None:
    data = bytearray(encode(noisy(), "PNG"))
    data[50] ^= 0xFF  # inside IDAT
    with pytest.raises(ImageError, match="truncated or damaged"):
        load_image(bytes(data))


@pytest.mark.parametrize("width, height", [(20_000, 20_000), (8_000, 6_000)])
def test_decompression_bomb_refused_before_decoding(monkeypatch: pytest.MonkeyPatch, width: int, height: int) -> None:
    # 20000² exceeds Pillow's own limit (raised inside Image.open); 8000×6000 only ours.
    def no_decoding(self):  # noqa: ANN001
        raise AssertionError("pixels were decoded")
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    data = png_with_header(width, height)
    assert len(data) < 200
    start = time.perf_counter()
    with pytest.raises(ImageError, match="too large.*the limit is 40 megapixels"):
        load_image(data)
    assert time.perf_counter() - start < 1.0


def test_decompression_bomb_message_has_size() -> None:
    with pytest.raises(ImageError, match="8000×6000 pixels"):
        load_image(png_with_header(8000, 6000))
    with pytest.raises(ImageError, match="1000×1000 pixels; the limit is 999,999 pixels"):
        load_image(png_with_header(1000, 1000), max_pixels=999_999)


def test_pillows_bomb_warning_does_not_escape() -> None:
    # 100 megapixels: above Pillow's warning threshold, below its error threshold.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageError, match="10000×10000"):
            load_image(png_with_header(10_000, 10_000))


def test_pillow_bomb_limit_unchanged() -> None:
    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageError):
        load_image(png_with_header(20_000, 20_000))
    assert Image.MAX_IMAGE_PIXELS == before


# --- sizes ----------------------------------------------------------------------------------

def test_one_pixel() -> None:
    img = load_image(encode(Image.new("RGB", (1, 1), RED), "PNG"))
    assert img.size == (1, 1) and img.getpixel((0, 0)) == RED


def test_six_by_four_thousand_loads() -> None:
    img = load_image(encode(Image.new("RGB", (6000, 4000), (10, 200, 30)), "JPEG", quality=50))
    assert img.size == (6000, 4000) and img.mode == "RGB"
    assert 6000 * 4000 <= MAX_PIXELS


def test_long_strip_loads_but_cannot_be_fitted() -> None:
    img = load_image(encode(Image.new("RGB", (8000, 16), RED), "PNG"))
    assert img.size == (8000, 16)
    with pytest.raises(ImageError, match="too short for this size: 8000×16 pixels would become 256×1"):
        fit_within(*img.size, 256)
    with pytest.raises(ImageError, match="too narrow"):
        fit_within(16, 8000, 256)


@pytest.mark.parametrize("size, longest, expected", [
    ((1024, 768), 512, (512, 384)),
    ((768, 1024), 512, (384, 512)),
    ((979, 734), 512, (512, 384)),  # 383.87 rounds up
    ((100, 100), 256, (256, 256)),
    ((1, 1), 64, (64, 64)),
    ((3000, 17), 3000, (3000, 17)),
])
def test_fit_within(size: tuple[int, int], longest: int, expected: tuple[int, int]) -> None:
    assert fit_within(*size, longest) == expected


def test_fit_within_min_side_and_bad_input() -> None:
    assert fit_within(1000, 10, 100, min_side=1) == (100, 1)
    with pytest.raises(ValueError):
        fit_within(100, 100, 0)
    with pytest.raises(ImageError):
        fit_within(0, 100, 64)


def test_resize_longest() -> None:
    img = noisy((64, 48))
    down = resize_longest(img, 32)
    up = resize_longest(img, 128)
    same = resize_longest(img, 64)
    assert down.size == (32, 24) and up.size == (128, 96) and same.size == (64, 48)
    assert same is not img
    flat = resize_longest(Image.new("RGB", (300, 200), RED), 30)
    assert flat.getpixel((15, 10)) == RED


# --- modes ----------------------------------------------------------------------------------

def test_palette_with_transparency_over_white() -> None:
    p = Image.new("P", (2, 1))
    p.putpalette([255, 0, 0, 0, 255, 0])
    p.putpixel((1, 0), 1)
    for fmt in ("PNG", "GIF"):
        img = load_image(encode(p, fmt, transparency=1))
        assert img.mode == "RGB"
        assert img.getpixel((0, 0)) == RED and img.getpixel((1, 0)) == WHITE, fmt


def test_rgba_half_transparent_over_white() -> None:
    rgba = Image.new("RGBA", (2, 1), (255, 0, 0, 255))
    rgba.putpixel((1, 0), (0, 0, 0, 0))
    half = Image.new("RGBA", (1, 1), (0, 0, 0, 128))
    img = load_image(encode(rgba, "PNG"))
    assert img.getpixel((0, 0)) == RED and img.getpixel((1, 0)) == WHITE
    assert load_image(encode(half, "PNG")).getpixel((0, 0)) == (127, 127, 127)


def test_rgb_and_grey_with_trns_colour_key() -> None:
    rgb = Image.new("RGB", (2, 1), RED)
    rgb.putpixel((1, 0), (0, 0, 255))
    img = load_image(encode(rgb, "PNG", transparency=(0, 0, 255)))
    assert img.getpixel((0, 0)) == RED and img.getpixel((1, 0)) == WHITE
    grey = Image.new("L", (2, 1), 40)
    grey.putpixel((1, 0), 0)
    img = load_image(encode(grey, "PNG", transparency=0))
    assert img.getpixel((0, 0)) == (40, 40, 40) and img.getpixel((1, 0)) == WHITE


@pytest.mark.parametrize("mode, value, fmt, expected", [
    ("1", 1, "PNG", WHITE),
    ("1", 0, "BMP", (0, 0, 0)),
    ("L", 77, "PNG", (77, 77, 77)),
    ("LA", (77, 0), "PNG", WHITE),
    ("LA", (77, 255), "TIFF", (77, 77, 77)),
    ("CMYK", (0, 255, 255, 0), "JPEG", RED),
    ("CMYK", (0, 255, 255, 0), "TIFF", RED),
    ("I;16", 65535, "PNG", WHITE),
    ("I;16", 32896, "TIFF", (128, 128, 128)),  # 128 × 257: scaled, not clipped to 255
    ("I;16B", 65535, "TIFF", WHITE),
    ("I;16B", 257 * 60, "TIFF", (60, 60, 60)),
    ("I", 200, "TIFF", (200, 200, 200)),
    ("F", 0.5, "TIFF", (128, 128, 128)),
    ("YCbCr", (76, 85, 255), "TIFF", (254, 0, 0)),  # red, as Pillow's own RGB→YCbCr gives it
])
def test_modes_to_rgb(mode: str, value, fmt: str, expected: tuple[int, int, int]) -> None:
    src = Image.new(mode, (3, 2), value)
    data = encode(src, fmt, quality=100) if fmt == "JPEG" else encode(src, fmt)
    opened = Image.open(io.BytesIO(data))
    if mode != "CMYK":
        assert opened.mode.startswith(mode[:3]), (opened.mode, mode)
    img = load_image(data)
    assert img.mode == "RGB"
    got = img.getpixel((1, 1))
    assert all(abs(a - b) <= 2 for a, b in zip(got, expected)), (got, expected)


def test_lab_tiff_to_rgb() -> None:
    red = Image.new("RGB", (2, 2), RED)
    to_lab = ImageCms.buildTransform(ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB")
    lab = ImageCms.applyTransform(red, to_lab)
    img = load_image(encode(lab, "TIFF"))
    got = img.getpixel((0, 0))
    assert got[0] > 240 and got[1] < 15 and got[2] < 15, got


def test_wide_range_int_and_float_are_stretched() -> None:
    i = Image.new("I", (2, 1), -1000)
    i.putpixel((1, 0), 100_000)
    img = load_image(encode(i, "TIFF"))
    assert img.getpixel((0, 0)) == (0, 0, 0) and img.getpixel((1, 0)) == WHITE
    f = Image.new("F", (2, 1), 0.0)
    f.putpixel((1, 0), 1.0)
    img = load_image(encode(f, "TIFF"))
    assert img.getpixel((0, 0)) == (0, 0, 0) and img.getpixel((1, 0)) == WHITE


@pytest.mark.parametrize("mode", ["HSV", "La", "RGBa", "PA"])
def test_to_rgb_in_memory_modes(mode: str) -> None:
    # No file format stores these; images built in memory still convert correctly.
    if mode == "HSV":
        src = Image.new("RGB", (1, 1), RED).convert("HSV")
        assert to_rgb(src).getpixel((0, 0)) == RED
    elif mode == "PA":
        src = Image.new("PA", (1, 1), (0, 255))
        src.putpalette([255, 0, 0])
        assert to_rgb(src).getpixel((0, 0)) == RED
        src.putpixel((0, 0), (0, 0))
        assert to_rgb(src).getpixel((0, 0)) == WHITE
    else:
        straight = Image.new("RGBA", (1, 1), (200, 200, 200, 128))
        src = straight.convert("RGBa") if mode == "RGBa" else Image.merge(
            "La", (straight.convert("RGBa").getchannel(0), straight.getchannel("A")))
        r, g, b = to_rgb(src).getpixel((0, 0))
        assert abs(r - 227) <= 2 and r == g == b  # 200·0.5 + 255·0.5


def test_rgb_is_returned_unchanged_by_to_rgb() -> None:
    img = Image.new("RGB", (1, 1))
    assert to_rgb(img) is img


# --- orientation, formats, sources ----------------------------------------------------------

@pytest.mark.parametrize("orientation, corner", [(6, (39, 0)), (8, (0, 59))])
def test_exif_orientation(orientation: int, corner: tuple[int, int]) -> None:
    # Stored 60×40 with a red top-left block; displayed 40×60, the block moves to `corner`.
    stored = Image.new("RGB", (60, 40), WHITE)
    stored.paste(RED, (0, 0, 10, 10))
    img = load_image(with_orientation(stored, orientation))
    assert img.size == (40, 60)
    r, g, b = img.getpixel(corner)
    assert r > 200 and g < 60 and b < 60, (corner, (r, g, b))


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_exif_orientation_ignored_when_exif_is_garbage() -> None:
    data = encode(noisy(), "JPEG")
    app1 = b"Exif\x00\x00" + b"MM\x00*\x00\x00\x00\x08\xff\xff\xff"  # IFD runs off the end
    spliced = data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:]
    assert load_image(spliced).size == (64, 48)


def test_real_photo_with_exif() -> None:
    path = TEST_IMAGES / "style" / "seated-nude.jpg"
    img = load_image(path)
    assert img.mode == "RGB" and img.size == (650, 845)


def test_animated_gif_and_webp_give_first_frame() -> None:
    frames = [Image.new("RGB", (20, 10), c) for c in (RED, (0, 255, 0), (0, 0, 255))]
    for fmt, kw in (("GIF", {}), ("WEBP", {"lossless": True})):
        data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=50, **kw)
        assert Image.open(io.BytesIO(data)).n_frames == 3
        img = load_image(data)
        assert img.getpixel((5, 5)) == RED and type(img) is Image.Image, fmt


@pytest.mark.parametrize("fmt, kw", [("WEBP", {"lossless": True}), ("TIFF", {}), ("BMP", {}),
                                     ("GIF", {}), ("PNG", {}), ("JPEG", {"quality": 100})])
def test_formats_load(tmp_path: Path, fmt: str, kw: dict) -> None:
    src = Image.new("RGB", (30, 20), (200, 30, 60))
    data = encode(src, fmt, **kw)
    assert sniff(data) == fmt
    path = tmp_path / "picture.txt"  # the name is never trusted, either way
    path.write_bytes(data)
    from_path, from_bytes = load_image(path), load_image(data)
    assert from_path.size == (30, 20) and from_path.mode == "RGB"
    assert from_path.tobytes() == from_bytes.tobytes()
    got = from_path.getpixel((3, 3))
    assert all(abs(a - b) <= 6 for a, b in zip(got, (200, 30, 60))), got  # GIF palettes, JPEG


def test_path_str_and_bytes_give_the_same_image() -> None:
    path = TEST_IMAGES / "content" / "tubingen.jpg"
    a, b, c = load_image(path), load_image(str(path)), load_image(path.read_bytes())
    assert a.tobytes() == b.tobytes() == c.tobytes()


def test_unsupported_formats_get_a_helpful_message() -> None:
    with pytest.raises(ImageError, match="PDF"):
        load_image(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + bytes(range(256)))
    with pytest.raises(ImageError, match="HEIC/AVIF"):
        load_image(b"\x00\x00\x00\x1cftypheic" + bytes(range(256)))
    with pytest.raises(ImageError, match="not an image we can read"):
        load_image(encode(Image.new("RGB", (4, 4)), "ICO"))


def test_module_imports_no_heavy_packages() -> None:
    code = ("import sys, engine.images, engine.pngmeta; "
            "bad = [m for m in ('torch', 'numpy') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
