"""engine.pngmeta: params travel inside result PNGs as iTXt chunks."""
from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from engine.images import ImageError, load_image
from engine.params import Params
from engine.pngmeta import (
    A1111_KEY,
    PARAMS_KEY,
    ResultInfo,
    png_bytes,
    read_metadata,
    read_params_json,
    read_result_info,
    result_png,
    save_png,
)


def image() -> Image.Image:
    img = Image.new("RGB", (8, 6), (10, 20, 30))
    img.putpixel((1, 1), (250, 0, 0))
    return img


def test_round_trip_bytes_and_path(tmp_path: Path) -> None:
    params = Params(content="tübingen.jpg", styles=("星空.jpg",), size=256).to_json()
    info = ResultInfo(params, title="Ünïcödé — «test» 🎨", tags="a, b")
    data = result_png(image(), info)
    save_png(image(), tmp_path / "out.png", info)
    assert (tmp_path / "out.png").read_bytes() == data
    for source in (data, tmp_path / "out.png", str(tmp_path / "out.png")):
        assert read_result_info(source) == info
        assert read_params_json(source) == params
    assert Params.from_json(read_params_json(data)) == Params(content="tübingen.jpg", styles=("星空.jpg",), size=256)
    # The pixels are untouched, and the image loader reads the file like any other PNG.
    assert load_image(data).tobytes() == image().tobytes()


def test_large_json_round_trip() -> None:
    # Bigger than Pillow's 1 MB limit for compressed text chunks: we write it uncompressed.
    big = json.dumps({"notes": ["naïve ☃ " * 50 for _ in range(3000)], "n": list(range(20000))})
    assert len(big.encode()) > 1_100_000
    data = png_bytes(image(), {PARAMS_KEY: big})
    assert read_params_json(data) == big
    assert Image.open(io.BytesIO(data)).text[PARAMS_KEY] == big  # Pillow agrees


def test_no_params() -> None:
    data = png_bytes(image())
    assert read_params_json(data) is None
    assert read_metadata(data) == {}


class _Result:
    """The attributes of engine.transfer.Result that a PNG records (without running the engine)."""
    weights_name, weights_sha256, device, evaluation = "caffe", "ab" * 32, "cpu", "winograd"
    timings = {"setup": 0.12345, "optimize": 1.5, "total": 1.62345}
    losses = {"total": 12.5, "content": 2.0, "style": 10.5, "tv": 0.0}


def test_result_info_round_trip_and_a1111_parameters() -> None:
    params = Params(content="/data/inputs/x.jpg", styles=("/data/inputs/s.jpg", "/data/inputs/t.jpg"),
                    size=384, iterations=250, seed=7, style_blend=(2.0, 1.0))
    info = ResultInfo.of_result(_Result(), params.to_json(), content_name="tübingen.jpg",
                                style_names=("starry_night.jpg", "the, scream.jpg"), created="2026-12-02T10:00:00.000+00:00",
                                title="t", tags="x")
    texts = read_metadata(result_png(image(), info))
    assert read_result_info(result_png(image(), info)) == info
    assert texts["studio:weights"] == f"caffe sha256:{'ab' * 32}"
    assert json.loads(texts["studio:timings"]) == {"setup": 0.123, "optimize": 1.5, "total": 1.623}
    description, settings = texts[A1111_KEY].split("\n")
    assert description == "tübingen.jpg in the style of starry_night.jpg, the, scream.jpg"
    assert settings.startswith("Steps: 250, Sampler: lbfgs, Seed: 7, Size: 384, Model: caffe, Model hash: ababababab, ")
    assert "Style blend: 0.6666666666666666 0.3333333333333333" in settings
    assert "Device: cpu, Evaluation: winograd" in settings


def test_result_info_of_old_pngs_and_others() -> None:
    # Keys as the studio wrote them before ResultInfo, and a PNG that is not ours.
    old = png_bytes(image(), {PARAMS_KEY: "{}", "studio:weights": "caffe sha256:ff", "studio:losses": "not json",
                              "studio:style_names": '["a.jpg", 3]', "studio:device": "cuda (channels_last+bf16)"})
    info = read_result_info(old)
    assert (info.weights_name, info.weights_sha256, info.losses, info.style_names) == ("caffe", "ff", {}, ("a.jpg",))
    # Before studio:evaluation, the device said both where and how.
    assert (info.device, info.evaluation) == ("cuda", "channels_last+bf16")
    assert read_result_info(png_bytes(image(), {"Comment": "hi"})) is None


def test_reads_text_written_by_others() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "latin-1 café")
    info.add_text("Compressed", "zz " * 1000, zip=True)
    info.add_itxt("Zipped iTXt", "ünï " * 1000, lang="de", tkey="Gepackt", zip=True)
    out = io.BytesIO()
    image().save(out, "PNG", pnginfo=info)
    assert read_metadata(out.getvalue()) == {"Comment": "latin-1 café", "Compressed": "zz " * 1000,
                                            "Zipped iTXt": "ünï " * 1000}


def test_non_rgb_modes_are_saved() -> None:
    for mode in ("RGBA", "L", "P", "CMYK", "F"):
        data = png_bytes(Image.new(mode, (4, 4)), {PARAMS_KEY: "{}"})
        assert read_params_json(data) == "{}", mode


def test_bad_keys_refused() -> None:
    for key in ("", " lead", "a" * 80, "snow☃", "two  spaces"):
        with pytest.raises(ValueError):
            png_bytes(image(), {key: "x"})


@pytest.mark.parametrize("data", [
    b"",
    b"not a png at all",
    b"\xff\xd8\xff\xe0 a jpeg header",
    b"<svg xmlns='http://www.w3.org/2000/svg'/>",
])
def test_not_png_raises(data: bytes) -> None:
    with pytest.raises(ImageError):
        read_metadata(data)


def test_jpeg_raises(tmp_path: Path) -> None:
    out = io.BytesIO()
    image().save(out, "JPEG")
    (tmp_path / "photo.png").write_bytes(out.getvalue())
    with pytest.raises(ImageError, match="not a PNG"):
        read_params_json(tmp_path / "photo.png")


def test_damaged_png_raises() -> None:
    data = png_bytes(image(), {PARAMS_KEY: '{"a": 1}'})
    with pytest.raises(ImageError, match="truncated or damaged"):
        read_metadata(data[: len(data) - 20])
    flipped = bytearray(data)
    flipped[data.index(b"iTXt") + 8] ^= 0x20  # inside the text: the CRC no longer matches
    with pytest.raises(ImageError, match="truncated or damaged"):
        read_metadata(bytes(flipped))
    with pytest.raises(ImageError):
        read_metadata(Path("/nonexistent/result.png"))


def test_ztxt_bomb_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("engine.pngmeta._MAX_TEXT", 10_000)
    body = b"Bomb\x00\x00" + zlib.compress(b"a" * 1_000_000)
    chunk = struct.pack(">I", len(body)) + b"zTXt" + body + struct.pack(">I", zlib.crc32(b"zTXt" + body))
    data = png_bytes(image())
    bomb = data[:33] + chunk + data[33:]  # right after IHDR
    with pytest.raises(ImageError, match="too large"):
        read_metadata(bomb)
