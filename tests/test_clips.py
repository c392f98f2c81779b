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
from harness.paths import CONTENT

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
    (3, 4000, (8, 8), "lasts more than 10 s; clips may have"),
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


# --- what one upload can cost the server (finding 6 of the security review) -------------------------

def _big_gif(frames: int, size: tuple[int, int] = (1920, 1080)) -> bytes:
    """`frames` frames of `size`, small on disk (each a flat colour) and huge decoded."""
    shades = [Image.new("P", size, k % 2) for k in range(frames)]
    for frame in shades:
        frame.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    out = io.BytesIO()
    shades[0].save(out, "GIF", save_all=True, append_images=shades[1:], duration=100, loop=0, optimize=False)
    return out.getvalue()


def test_a_clip_over_the_total_pixels_is_refused_from_its_header() -> None:
    """Before: 240 frames of 1080p passed every bound (each was per frame or per count), 2 GB
    decoded. Now frames × width × height is bounded too, checked before any frame is decoded."""
    from engine import clips

    data = _big_gif(80)  # 80 × 2.07 MP = 166 MP
    assert len(data) < 2_000_000
    decoded = []
    real = Image.Image.convert
    try:
        Image.Image.convert = lambda self, *a, **k: decoded.append(1) or real(self, *a, **k)  # type: ignore[method-assign]
        with pytest.raises(ImageError, match="80 frames of 1920×1080, 166 megapixels in all; clips may have"):
            clips.clip_info(data)
    finally:
        Image.Image.convert = real  # type: ignore[method-assign]
    assert decoded == []


def test_checking_a_clip_keeps_one_frame_at_a_time(tmp_path) -> None:
    """Before: the upload's every frame was decoded and kept: a 210 KB GIF of 60 1080p frames
    raised the server's peak memory by 342 MB. clip_info holds one frame at a time; read_clip
    (what a job needs) still holds them all, which is the comparison made here."""
    import subprocess
    import sys

    path = tmp_path / "big.gif"
    path.write_bytes(_big_gif(60))  # 124 MP: within the bounds
    # The peak from /proc (VmHWM): ru_maxrss would start from the forking test process's size.
    probe = ("from engine import clips; "
             "kb = lambda field: int(open('/proc/self/status').read().split(field + ':')[1].split()[0]); "
             f"base = kb('VmRSS'); info = clips.{{}}('{path}'); print((kb('VmHWM') - base) // 1024)")
    grew = {how: int(subprocess.run([sys.executable, "-c", probe.format(how)], capture_output=True, text=True,
                                    check=True).stdout) for how in ("clip_info", "read_clip")}
    assert grew["read_clip"] > 300  # MB: every frame kept (60 × 1920 × 1080 × 4 bytes is 498 MB)
    assert grew["clip_info"] < 60, grew


def test_a_video_too_large_a_frame_is_refused_before_its_first_frame_is_decoded(tmp_path) -> None:
    """Before: a video's first frame (the thumbnail) was decoded whatever its size."""
    import cv2

    path = tmp_path / "wide.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (2000, 1100))
    for _ in range(2):
        writer.write(np.zeros((1100, 2000, 3), np.uint8))
    writer.release()
    for read in (first_frame, read_clip):
        with pytest.raises(ImageError, match="frames are 2000×1100; clips may have"):
            read(path)


def test_at_most_two_clips_are_decoded_at_once_the_rest_wait_and_are_told() -> None:
    import threading

    from engine import clips

    data = _big_gif(2, (32, 32))
    inside, release = threading.Semaphore(0), threading.Event()
    real = clips._frames

    def slow(data: bytes):
        inside.release()
        release.wait(10)
        yield from real(data)

    told: list[int] = []
    clips._frames = slow
    try:
        threads = [threading.Thread(target=clips.clip_info, args=(data, lambda i=i: told.append(i))) for i in range(3)]
        for t in threads[:2]:
            t.start()
        assert inside.acquire(timeout=10) and inside.acquire(timeout=10)  # two decode at once
        threads[2].start()
        assert not inside.acquire(timeout=0.5) and told == [2]  # the third waits, and says so
        release.set()
        for t in threads:
            t.join(10)
        assert inside.acquire(timeout=1)  # then it had its turn
    finally:
        clips._frames = real
