"""Animated inputs (engine/clips.py) and the flow between their frames (engine/flow.py), with real
codecs: GIF and WebP through Pillow, MP4 through OpenCV."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from engine.clips import MAX_FRAMES, Clip, clip_format, first_frame, is_clip, read_clip, write_gif, write_webp
from engine.flow import flicker, flow, reliable, warp
from engine.images import ImageError
from support.paths import CONTENT

SHIFT = 3  # pixels the scene moves left from one frame to the next


def panned(frames: int = 4, size: tuple[int, int] = (96, 64), step: int = SHIFT) -> list[Image.Image]:
    """A known pan over the content photo: each frame's view `step` px further right."""
    photo = Image.open(CONTENT).convert("RGB").resize((320, 240))
    w, h = size
    return [photo.crop((40 + k * step, 60, 40 + k * step + w, 60 + h)) for k in range(frames)]


def encoded(clip: Clip, fmt: str) -> bytes:
    out = io.BytesIO()
    clip.frames[0].save(out, fmt, save_all=True, append_images=clip.frames[1:], duration=clip.durations_ms, loop=0)
    return out.getvalue()


@pytest.mark.parametrize("write", [write_gif, write_webp])
def test_frames_and_timing_survive_a_round_trip(tmp_path, write) -> None:
    clip = Clip(panned(), [80, 120, 80, 200])
    path = write(clip, tmp_path / f"clip.{write.__name__[6:]}")
    back = read_clip(path)
    assert len(back.frames) == 4 and back.durations_ms == [80, 120, 80, 200] and back.size == (96, 64)
    assert is_clip(path) and not is_clip(CONTENT) and clip_format(path) == write.__name__[6:].upper()
    assert first_frame(path).size == (96, 64)
    assert back.seconds == pytest.approx(0.48)


def test_a_video_is_read_with_its_frame_rate(tmp_path) -> None:
    import cv2

    path = tmp_path / "pan.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 64))
    for frame in panned(6):
        writer.write(cv2.cvtColor(np.asarray(frame), cv2.COLOR_RGB2BGR))
    writer.release()
    clip = read_clip(path)
    assert len(clip.frames) == 6 and clip.durations_ms == [100] * 6 and clip.size == (96, 64)
    assert is_clip(path.read_bytes()) and clip_format(path) == "MP4"
    assert np.array_equal(np.asarray(first_frame(path)), np.asarray(clip.frames[0]))  # without the rest
    # Lossy, but the same picture.
    assert np.abs(np.asarray(clip.frames[2], float) - np.asarray(panned(6)[2], float)).mean() < 12

    cut = path.read_bytes()[: path.stat().st_size // 3]
    with pytest.raises(ImageError, match="damaged|cut short|could not be opened"):
        read_clip(cut)


@pytest.mark.parametrize("frames, ms, size, message", [
    (MAX_FRAMES + 1, 10, (8, 8), f"{MAX_FRAMES + 1} frames; clips may have at most {MAX_FRAMES} frames"),
    (3, 4000, (8, 8), "lasts 12.0 s; clips may have"),
    (2, 100, (2000, 1100), "frames are 2000×1100; clips may have"),
])
def test_every_bound_says_what_it_is(frames: int, ms: int, size: tuple[int, int], message: str) -> None:
    shades = [Image.new("RGB", size, (k % 256, 0, 0)) for k in range(frames)]
    with pytest.raises(ImageError, match=message):
        read_clip(encoded(Clip(shades, [ms] * frames), "GIF"))


def test_not_a_clip_and_a_damaged_one() -> None:
    with pytest.raises(ImageError, match="not an animation or a video"):
        read_clip(b"hello, this is text" * 10)
    data = encoded(Clip(panned(), [100] * 4), "GIF")
    with pytest.raises(ImageError, match="damaged or cut short"):
        read_clip(data[: len(data) // 2])


def test_a_known_pan_is_found_and_undone() -> None:
    a, b = panned(2)
    forward, backward = flow(a, b), flow(b, a)
    inner = (slice(8, -8), slice(8, -8))
    assert np.median(forward[inner][..., 0]) == pytest.approx(-SHIFT, abs=0.25)
    assert np.median(forward[inner][..., 1]) == pytest.approx(0, abs=0.25)
    # b sampled where a's pixels went lands on a.
    lined_up = np.asarray(warp(b, forward), float)[inner]
    assert np.abs(lined_up - np.asarray(a, float)[inner]).mean() < 4
    mask = reliable(forward, backward)
    assert mask[inner].mean() > 0.9
    assert not mask[:, :SHIFT - 1].any()  # pixels that leave the frame are not trusted


def test_flicker_counts_change_beyond_the_motion() -> None:
    frames = panned(4)
    steady = flicker(frames, frames)  # outputs that move exactly as the input
    rng = np.random.default_rng(0)
    noisy = [Image.fromarray(np.clip(np.asarray(f, float) + rng.normal(0, 25, (64, 96, 3)), 0, 255).astype(np.uint8))
             for f in frames]
    assert steady < 4 < flicker(noisy, frames)
