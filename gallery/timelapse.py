"""A finished run's time-lapse, an animated WebP: its saved intermediate images in order,
then the result, held. Pillow only.

Previews of coarser scales are smaller than the result; every frame is scaled to the result's
size so the time-lapse does not jump."""
from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from gallery.errors import GalleryError
from gallery.paths import as_run_id
from gallery.store import Gallery

FRAME_MS = 150
HOLD_MS = 2000  # the result, at the end of each loop
QUALITY = 80


def progress_frames(gallery: Gallery, run_id: int) -> list[Path]:
    """The images of the time-lapse, first to last: the previews by iteration, then the result."""
    run = gallery.get(as_run_id(run_id))
    if run.status != "done" or run.result_path is None or not run.result_path.is_file():
        raise GalleryError(f"Run {run.id} is {run.status}; only finished runs have a time-lapse.")
    return [path for _, path in gallery.previews(run.id) if path.is_file()] + [run.result_path]


def timelapse_webp(gallery: Gallery, run_id: int) -> bytes:
    """The time-lapse of a finished run, an animated WebP (a single frame when it saved no previews)."""
    paths = progress_frames(gallery, run_id)
    with Image.open(paths[-1]) as last:
        size = last.size
    frames = []
    for path in paths:
        with Image.open(path) as img:
            frame = img.convert("RGB")
        frames.append(frame if frame.size == size else frame.resize(size, Image.Resampling.LANCZOS))
    out = io.BytesIO()
    frames[0].save(out, "WEBP", save_all=True, append_images=frames[1:], loop=0, quality=QUALITY,
                   duration=[FRAME_MS] * (len(frames) - 1) + [HOLD_MS])
    return out.getvalue()
