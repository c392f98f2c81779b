"""A finished run's time-lapse (an animated WebP): the previews in order, the result held last."""
from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageSequence, ImageStat

from gallery import Gallery, GalleryError
from gallery.cli import main
from gallery.timelapse import HOLD_MS, timelapse_webp
from support.runs import fake_result, tiny_params


def frames_of(path_or_file) -> list[tuple[Image.Image, int]]:
    with Image.open(path_or_file) as img:
        assert img.format == "WEBP" and img.is_animated
        return [(f.convert("RGB"), f.info["duration"]) for f in ImageSequence.Iterator(img)]


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3


@pytest.fixture
def finished(data_dir: Path) -> Gallery:
    g = Gallery(data_dir)
    rid = g.submit(tiny_params(preview_every=1))
    g.claim(rid, "t")
    result = fake_result("orange", previews=3, size=(32, 24))
    # Previews of distinct greys, the first at a coarser scale's size.
    result.previews = [(i, Image.new("RGB", (16, 12) if i == 1 else (32, 24), (40 * i,) * 3)) for i in (1, 2, 3)]
    g.finish(rid, result)
    yield g
    g.close()


def test_the_frames_are_the_previews_in_order_then_the_result_held(finished: Gallery, tmp_path: Path):
    out = tmp_path / "progress.webp"
    out.write_bytes(timelapse_webp(finished, 1))
    frames = frames_of(out)
    assert len(frames) == 4
    assert all(f.size == (32, 24) for f, _ in frames)
    for i, (frame, _) in enumerate(frames[:3], start=1):
        assert mean_difference(frame, Image.new("RGB", (32, 24), (40 * i,) * 3)) < 4
    result = Image.open(finished.get(1).result_path).convert("RGB")
    assert mean_difference(frames[-1][0], result) < 4
    assert frames[-1][1] == HOLD_MS and all(d < HOLD_MS for _, d in frames[:-1])


def test_the_cli_writes_it_and_refuses_unfinished_runs(finished: Gallery, data_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "p.webp"
    assert main(["--data", str(data_dir), "export", "1", "--progress", str(out)]) == 0
    assert len(frames_of(out)) == 4
    queued = finished.submit(tiny_params())
    with pytest.raises(GalleryError, match="only finished runs"):
        timelapse_webp(finished, queued)
    assert main(["--data", str(data_dir), "export", str(queued), "--progress", str(out)]) != 0
    assert "only finished runs" in capsys.readouterr().err
