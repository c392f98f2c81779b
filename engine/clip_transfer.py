"""A clip styled frame by frame without flicker (Ruder et al., "Artistic style transfer for
videos", 2016): the first frame is a still run (multi-scale as usual); every later frame starts
from the previous result warped by the input's motion and keeps to it where that motion is
reliable (`temporal_weight`), for `frame_iterations` at the final size.
"""
from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from engine import flow, images
from engine.clips import Clip
from engine.params import Params, validate
from engine.transfer import FrameStart, Progress, Result, Reuse, run

FrameFn = Callable[[int, Result], None]


@dataclass
class FrameProgress:
    """Progress within a clip: frame k (1-based) of n, and the engine's progress within it."""

    frame: int
    frames: int
    inner: Progress


def frame_params(p: Params) -> Params:
    """A later frame's run: single scale, its own iteration count."""
    return p.with_changes(multiscale=False, iterations=p.frame_iterations, preview_every=0)


def style_clip(p: Params, clip: Clip, on_progress: Callable[[FrameProgress], None] | None = None,
               should_cancel: Callable[[], bool] | None = None, on_frame: FrameFn | None = None,
               done: list[Image.Image] | None = None, reuse: Reuse | None = None) -> Clip:
    """The styled clip, same frames and timing. `on_frame(k, result)` is told of each finished
    frame (k from 0) as it finishes; `done`: frames finished earlier, to continue after them.
    The network and the style Grams are made once for the whole clip (in `reuse`, when given)."""
    validate(p, need_images=False)
    reuse = Reuse() if reuse is None else reuse
    results = list(done or [])
    size = images.fit_within(*clip.size, p.size)
    frames = [f.resize(size, Image.Resampling.LANCZOS) for f in clip.frames]
    with tempfile.TemporaryDirectory(prefix="clip-") as tmp:
        for k in range(len(results), len(frames)):
            source = Path(tmp) / f"frame-{k:04d}.png"
            clip.frames[k].save(source)
            start = None
            if k:
                back, mask = flow.motion(frames[k - 1], frames[k])
                start = FrameStart(flow.warp(results[k - 1], back), mask)
            params = (frame_params(p) if k else p).with_changes(content=str(source))

            def progress(inner: Progress, k: int = k) -> None:
                if on_progress is not None:
                    on_progress(FrameProgress(k + 1, len(frames), inner))

            result = run(params, progress, should_cancel, start=start, reuse=reuse)
            results.append(result.image)
            if on_frame is not None:
                on_frame(k, result)
    return Clip(results, list(clip.durations_ms))
