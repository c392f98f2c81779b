"""Animated inputs and outputs: animated GIF and WebP through Pillow, videos (MP4, WebM, MOV)
through OpenCV, with bounds a person is told up front.

OpenCV is imported only here and in engine/flow.py, and only when a video is read, so still
images need torch and Pillow alone.
"""
from __future__ import annotations

import io
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageSequence

from engine.images import ImageError, load_image, read_bytes, sniff

MAX_FRAMES = 240
MAX_SECONDS = 10.0
MAX_FRAME_PIXELS = 1920 * 1080
# Frames × width × height: what a clip's decoded frames take together (4 bytes a pixel in
# Pillow), so one upload cannot fill the server's memory however its frames are counted.
MAX_CLIP_PIXELS = 150_000_000
# Clips checked at once in one process; further uploads wait their turn (decode_slot).
MAX_DECODES = 2
DEFAULT_FRAME_MS = 100  # a GIF frame without a duration; what browsers show it for
LIMITS = (f"at most {MAX_FRAMES} frames, {MAX_SECONDS:g} s, {MAX_FRAME_PIXELS / 1e6:.1f} megapixels a frame "
          f"and {MAX_CLIP_PIXELS / 1e6:.0f} megapixels in all")


@dataclass
class Clip:
    """Frames in order, each shown for its duration (ms)."""

    frames: list[Image.Image]
    durations_ms: list[int]

    @property
    def seconds(self) -> float:
        return sum(self.durations_ms) / 1000

    @property
    def size(self) -> tuple[int, int]:
        return self.frames[0].size


@dataclass(frozen=True)
class ClipInfo:
    """What a clip is, found by decoding every frame without keeping them."""

    format: str
    size: tuple[int, int]
    frames: int
    duration_ms: int


def _video_kind(data: bytes) -> str | None:
    """MP4/MOV (an ISO base media `ftyp` box) or WebM/Matroska (EBML), from the magic bytes."""
    head = bytes(data[:64])
    if head[4:8] == b"ftyp":
        return "MOV" if head[8:10] == b"qt" else "MP4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "WEBM"
    return None


def clip_format(source: str | os.PathLike | bytes) -> str | None:
    """"MP4", "MOV" or "WEBM" for a video, "GIF" or "WEBP" for an animation of more than one
    frame, None for anything else (a still image too); from the content, not the name."""
    data = read_bytes(source)
    kind = _video_kind(data)
    if kind:
        return kind
    fmt = sniff(data)
    if fmt not in ("GIF", "WEBP"):
        return None
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as img:
            return fmt if getattr(img, "n_frames", 1) > 1 else None
    except (OSError, ValueError):
        return None


def is_clip(source: str | os.PathLike | bytes) -> bool:
    """Whether `source` is a video, or a GIF or WebP of more than one frame."""
    return clip_format(source) is not None


def read_clip(source: str | os.PathLike | bytes) -> Clip:
    """Every frame of an animation or video as RGB, with its timing; ImageError beyond the bounds
    or for a file that is not one."""
    frames, durations = [], []
    for frame, ms in _frames(read_bytes(source)):
        frames.append(frame)
        durations.append(ms)
    return Clip(frames, durations)


_DECODING = threading.BoundedSemaphore(MAX_DECODES)


@contextmanager
def decode_slot(waiting: Callable[[], None] | None = None) -> Iterator[None]:
    """One of MAX_DECODES places to decode a clip in; `waiting` is called first when all are
    taken (to tell the person), then this waits for one."""
    if not _DECODING.acquire(blocking=False):
        if waiting is not None:
            waiting()
        _DECODING.acquire()
    try:
        yield
    finally:
        _DECODING.release()


def clip_info(source: str | os.PathLike | bytes, waiting: Callable[[], None] | None = None) -> ClipInfo:
    """Checks that every frame of a clip decodes, within the bounds, holding one frame at a time
    and at most MAX_DECODES clips at once in the process (see decode_slot); ImageError otherwise."""
    data = read_bytes(source)
    fmt = _video_kind(data) or sniff(data) or "unknown"
    count, total_ms, size = 0, 0, (0, 0)
    with decode_slot(waiting):
        for frame, ms in _frames(data):
            count, total_ms, size = count + 1, total_ms + ms, frame.size
    return ClipInfo(fmt, size, count, total_ms)


def _frames(data: bytes) -> Iterator[tuple[Image.Image, int]]:
    """Each frame (RGB) and its duration, decoded one at a time, every bound checked before the
    frame that would break it is decoded (from the header where it says, as each frame comes
    otherwise)."""
    kind = _video_kind(data)
    bounds = _Bounds()
    frames = _video_frames(data, kind, bounds) if kind else _animation_frames(data, bounds)
    count = 0
    for frame, ms in frames:
        count += 1
        yield frame, ms
    if not count:
        raise ImageError("The clip has no frames that could be read.")


class _Bounds:
    """The limits, counted as frames come."""

    def __init__(self) -> None:
        self.frames, self.ms, self.pixels = 0, 0.0, 0

    def size(self, width: int, height: int, frames: int | None = None) -> None:
        """A frame size (and a frame count, where the header gives it) before any is decoded."""
        if width * height > MAX_FRAME_PIXELS:
            raise ImageError(f"The clip's frames are {width}×{height}; clips may have {LIMITS}.")
        if frames is not None:
            _check_frames(frames)
            _check_pixels(frames, width, height)

    def add(self, width: int, height: int, ms: float) -> None:
        """One more frame of this size and duration, before it is converted and kept."""
        self.size(width, height)
        self.frames, self.ms, self.pixels = self.frames + 1, self.ms + ms, self.pixels + width * height
        _check_frames(self.frames)
        if self.ms > MAX_SECONDS * 1000 + 1e-6:
            raise ImageError(f"The clip lasts more than {MAX_SECONDS:g} s; clips may have {LIMITS}.")
        if self.pixels > MAX_CLIP_PIXELS:
            raise ImageError(f"The clip's frames hold more than {MAX_CLIP_PIXELS / 1e6:.0f} megapixels in all "
                             f"(at {width}×{height}, {MAX_CLIP_PIXELS // (width * height)} frames); clips may have {LIMITS}.")


def _check_frames(count: int) -> None:
    if count > MAX_FRAMES:
        raise ImageError(f"The clip has {count} frames; clips may have {LIMITS}.")


def _check_pixels(frames: int, width: int, height: int) -> None:
    if frames * width * height > MAX_CLIP_PIXELS:
        raise ImageError(f"The clip has {frames} frames of {width}×{height}, {frames * width * height / 1e6:.0f} "
                         f"megapixels in all; clips may have {LIMITS}.")


def _animation_frames(data: bytes, bounds: _Bounds) -> Iterator[tuple[Image.Image, int]]:
    fmt = sniff(data)
    if fmt not in ("GIF", "WEBP"):
        raise ImageError("This is not an animation or a video we can read (GIF, WebP, MP4, WebM or MOV).")
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as img:
            bounds.size(img.width, img.height, getattr(img, "n_frames", 1))
            for frame in ImageSequence.Iterator(img):
                rgb = frame.convert("RGB")  # decodes it, which is when WebP sets its duration
                ms = int(frame.info.get("duration") or DEFAULT_FRAME_MS)
                bounds.add(img.width, img.height, ms)
                yield rgb, ms
    except ImageError:
        raise
    except Exception as e:  # a damaged file makes Pillow's decoders fail in many ways (IndexError too)
        raise ImageError(f"The animation is damaged or cut short ({type(e).__name__}: {e}).") from e


@contextmanager
def _capture(data: bytes, kind: str) -> Iterator[Any]:
    """An opened cv2.VideoCapture of the video's bytes, its frame size checked from the header."""
    import cv2  # only for videos

    # OpenCV reads videos from files only.
    with tempfile.NamedTemporaryFile(suffix="." + kind.lower()) as tmp:
        tmp.write(data)
        tmp.flush()
        capture = cv2.VideoCapture(tmp.name)
        try:
            if not capture.isOpened():
                raise ImageError(f"The {kind} video could not be opened: it is damaged or uses an unknown codec.")
            _Bounds().size(int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
            yield capture
        finally:
            capture.release()


def _rgb(bgr: Any) -> Image.Image:
    import cv2

    return Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def _video_frames(data: bytes, kind: str, bounds: _Bounds) -> Iterator[tuple[Image.Image, int]]:
    import cv2

    with _capture(data, kind) as capture:
        fps = capture.get(cv2.CAP_PROP_FPS) or 0
        if not 0 < fps <= 240:
            raise ImageError(f"The {kind} video gives no usable frame rate ({fps:g}).")
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            bounds.add(bgr.shape[1], bgr.shape[0], 1000 / fps)
            yield _rgb(bgr), round(1000 / fps)
    if not bounds.frames:
        raise ImageError(f"No frame of the {kind} video could be decoded: it is damaged or cut short.")


def first_frame(source: str | os.PathLike | bytes) -> Image.Image:
    """A clip's first frame without decoding the rest (a still image: itself), RGB; ImageError
    when there is none to read."""
    data = read_bytes(source)
    kind = _video_kind(data)
    if not kind:
        return load_image(data)  # an animation's first frame
    with _capture(data, kind) as capture:
        ok, bgr = capture.read()
    if not ok:
        raise ImageError(f"No frame of the {kind} video could be decoded: it is damaged or cut short.")
    return _rgb(bgr)


def webp_bytes(clip: Clip) -> bytes:
    """An animated WebP that plays in browsers and common viewers, timing kept, looping."""
    out = io.BytesIO()
    clip.frames[0].save(out, "WEBP", save_all=True, append_images=clip.frames[1:],
                        duration=clip.durations_ms, loop=0, quality=90, method=4)
    return out.getvalue()


def gif_bytes(clip: Clip) -> bytes:
    """An animated GIF (256 colours a frame), timing kept, looping."""
    out = io.BytesIO()
    clip.frames[0].save(out, "GIF", save_all=True, append_images=clip.frames[1:],
                        duration=clip.durations_ms, loop=0, disposal=2)
    return out.getvalue()


def write_webp(clip: Clip, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.write_bytes(webp_bytes(clip))
    return path


def write_gif(clip: Clip, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.write_bytes(gif_bytes(clip))
    return path
