"""Animated inputs and outputs: animated GIF and WebP through Pillow, videos (MP4, WebM, MOV)
through OpenCV, with bounds a person is told up front.

OpenCV is imported only here and in engine/flow.py, and only when a video is read, so still
images need torch and Pillow alone.
"""
from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageSequence

from engine.images import ImageError, load_image, read_bytes, sniff

MAX_FRAMES = 240
MAX_SECONDS = 10.0
MAX_FRAME_PIXELS = 1920 * 1080
DEFAULT_FRAME_MS = 100  # a GIF frame without a duration; what browsers show it for
LIMITS = (f"at most {MAX_FRAMES} frames, {MAX_SECONDS:g} s and {MAX_FRAME_PIXELS / 1e6:.1f} megapixels a frame")


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
    data = read_bytes(source)
    kind = _video_kind(data)
    clip = _read_video(data, kind) if kind else _read_animation(data)
    _check(clip)
    return clip


def _check(clip: Clip) -> None:
    if not clip.frames:
        raise ImageError("The clip has no frames that could be read.")
    _check_frames(len(clip.frames))
    if clip.seconds > MAX_SECONDS + 1e-6:
        raise ImageError(f"The clip lasts {clip.seconds:.1f} s; clips may have {LIMITS}.")
    _check_frame_size(*clip.size)


# The readers check these as they go too, so a huge file is refused before it is decoded whole.
def _check_frames(count: int) -> None:
    if count > MAX_FRAMES:
        raise ImageError(f"The clip has {count} frames; clips may have {LIMITS}.")


def _check_frame_size(width: int, height: int) -> None:
    if width * height > MAX_FRAME_PIXELS:
        raise ImageError(f"The clip's frames are {width}×{height}; clips may have {LIMITS}.")


def _read_animation(data: bytes) -> Clip:
    fmt = sniff(data)
    if fmt not in ("GIF", "WEBP"):
        raise ImageError("This is not an animation or a video we can read (GIF, WebP, MP4, WebM or MOV).")
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as img:
            _check_frame_size(img.width, img.height)
            _check_frames(getattr(img, "n_frames", 1))
            frames, durations = [], []
            for frame in ImageSequence.Iterator(img):
                frames.append(frame.convert("RGB"))
                durations.append(int(frame.info.get("duration") or DEFAULT_FRAME_MS))
    except ImageError:
        raise
    except Exception as e:  # a damaged file makes Pillow's decoders fail in many ways (IndexError too)
        raise ImageError(f"The animation is damaged or cut short ({type(e).__name__}: {e}).") from e
    return Clip(frames, durations)


@contextmanager
def _capture(data: bytes, kind: str) -> Iterator[Any]:
    """An opened cv2.VideoCapture of the video's bytes."""
    import cv2  # only for videos

    # OpenCV reads videos from files only.
    with tempfile.NamedTemporaryFile(suffix="." + kind.lower()) as tmp:
        tmp.write(data)
        tmp.flush()
        capture = cv2.VideoCapture(tmp.name)
        try:
            if not capture.isOpened():
                raise ImageError(f"The {kind} video could not be opened: it is damaged or uses an unknown codec.")
            yield capture
        finally:
            capture.release()


def _rgb(bgr: Any) -> Image.Image:
    import cv2

    return Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def _read_video(data: bytes, kind: str) -> Clip:
    import cv2

    with _capture(data, kind) as capture:
        fps = capture.get(cv2.CAP_PROP_FPS) or 0
        if not 0 < fps <= 240:
            raise ImageError(f"The {kind} video gives no usable frame rate ({fps:g}).")
        frames: list[Image.Image] = []
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            height, width = bgr.shape[:2]
            _check_frame_size(width, height)
            if len(frames) == MAX_FRAMES or (len(frames) + 1) / fps > MAX_SECONDS + 1e-6:
                raise ImageError(f"The clip is longer than {MAX_FRAMES} frames or {MAX_SECONDS:g} s; "
                                 f"clips may have {LIMITS}.")
            frames.append(_rgb(bgr))
    if not frames:
        raise ImageError(f"No frame of the {kind} video could be decoded: it is damaged or cut short.")
    return Clip(frames, [round(1000 / fps)] * len(frames))


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
