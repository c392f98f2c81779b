"""How often a running job writes its progress: the worker's policy, not the gallery's.

The engine reports every iteration (hundreds a second on a GPU); the gallery records whatever
it is given. ProgressWriter writes at most every `interval` seconds, and the final iteration
always. A preview that falls between writes is kept and written with the next one, so
watchers always get the latest picture, and flush() writes what is left when a run ends early.
"""
from __future__ import annotations

import time
from typing import Any

from PIL import Image

INTERVAL_S = 0.5


class ProgressWriter:
    """Throttled progress of one run into a gallery (anything with record_progress)."""

    def __init__(self, gallery: Any, run_id: int, interval: float = INTERVAL_S):
        self._gallery = gallery
        self._run_id = run_id
        self._interval = interval
        self._last_write: float | None = None
        self._unsaved: tuple[int, int, dict[str, float], dict[str, int]] | None = None
        self._previews: list[tuple[int, Image.Image]] = []

    def report(self, iteration: int, total: int, losses: dict[str, float],
               preview: Image.Image | None = None, frame: int = 0, tile: int = 0, tiles: int = 0) -> bool:
        """Notes an iteration (of a clip's `frame`, 1-based; or a tiled run's `tile` of `tiles` in
        the next one); returns whether it was written now."""
        if preview is not None:
            self._previews = [(iteration, preview)]  # only the newest is worth a file
        self._unsaved = (iteration, total, losses, {"frame": frame, "tile": tile, "tiles": tiles})
        now = time.monotonic()
        if self._last_write is not None and now - self._last_write < self._interval and iteration < total:
            return False
        self._last_write = now
        return self.flush()

    def engine_progress(self, p: Any) -> bool:
        """report() of an engine's Progress, or of a clip's (engine.clip_transfer.FrameProgress: the
        engine's within frame k)."""
        inner = getattr(p, "inner", p)
        return self.report(inner.iteration, inner.total, inner.losses, inner.preview, frame=getattr(p, "frame", 0),
                           tile=getattr(inner, "tile", 0), tiles=getattr(inner, "tiles", 0))

    def flush(self) -> bool:
        """Writes what has not been written yet (call when the run stops); whether it wrote."""
        if self._unsaved is None:
            return False
        iteration, total, losses, where = self._unsaved
        previews, self._unsaved, self._previews = self._previews, None, []
        return self._gallery.record_progress(self._run_id, iteration, total, losses, previews, **where)
