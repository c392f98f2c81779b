"""A finished run's optimisation as an animated WebP: its saved intermediate images in order,
then the result, held. Pillow only.

Previews of coarser scales are smaller than the result; every frame is scaled to the result's
size so the animation does not jump."""
from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from gallery.errors import GalleryError
from gallery.paths import run_id
from gallery.store import Gallery

FRAME_MS = 150
HOLD_MS = 2000  # the result, at the end of each loop
QUALITY = 80


def progress_frames(gallery: Gallery, rid: int) -> list[Path]:
    """The images of the animation, first to last: the previews by iteration, then the result."""
    run = gallery.get(run_id(rid))
    if run.status != "done" or run.result_path is None or not run.result_path.is_file():
        raise GalleryError(f"Run {run.id} is {run.status}; only finished runs have their progress to animate.")
    return [path for _, path in gallery.previews(run.id) if path.is_file()] + [run.result_path]


def progress_webp(gallery: Gallery, rid: int) -> bytes:
    """The animated WebP of a finished run's progress (a single frame when it saved no previews)."""
    paths = progress_frames(gallery, rid)
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
