"""A clip run in the worker: every frame styled by engine.clip_transfer, each kept in the gallery as it
finishes, and a run queued again after an interruption continuing after the frames it has.

Imports torch (through the engine): the worker imports this module when a clip job starts.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from engine import clip_transfer, clips, images
from engine.params import Params
from engine.transfer import Result
from gallery import Run


class FrameStore(Protocol):
    """Where a clip run's finished frames are kept: the Gallery, or on a cluster's node what
    sends them to the head's gallery (worker/cluster.py)."""

    def resume_frames(self, run_id: int) -> list[Path]: ...

    def record_frame(self, run_id: int, position: int, image: Image.Image) -> bool: ...


def style_clip_run(gallery: FrameStore, run: Run, params: Params, on_progress: Callable[[Any], object],
                   should_cancel: Callable[[], bool]) -> tuple[Result, clips.Clip]:
    """The result to record (the first frame, with this job's timings) and the styled clip.
    Raises engine.images.ImageError for a clip that cannot be read (damaged since upload)."""
    t0 = time.perf_counter()
    clip = clips.read_clip(params.content)
    # At least the last frame is computed here, so there is a Result (weights, device) to record.
    # Plain images (copy), not PNG files: the styled clip may be pickled to a cluster's head.
    done = [images.load_image(path).copy() for path in gallery.resume_frames(run.id)[: len(clip.frames) - 1]]
    computed: list[Result] = []

    def finished(k: int, result: Result) -> None:
        gallery.record_frame(run.id, k, result.image)
        computed.append(result)

    def progress(frame_progress: Any) -> None:
        on_progress(frame_progress)

    styled = clip_transfer.style_clip(params, clip, progress, should_cancel, on_frame=finished, done=done)
    timings = {key: sum(r.timings.get(key, 0.0) for r in computed) for key in computed[-1].timings}
    # The whole clip's, as a still's total is its whole run's: decoding and the motion between
    # frames as well, which the speed estimates (gallery/estimates.py) must count.
    timings["total"] = time.perf_counter() - t0
    # Only the first frame's run has previews worth showing (the multi-scale still run).
    previews = computed[0].previews if not done else []
    return replace(computed[-1], image=styled.frames[0], timings=timings, previews=previews), styled
