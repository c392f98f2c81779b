"""The Gallery: input images, runs, their result files and the job queue, in one data folder.

Layout of the data folder (nothing is ever written outside it):

    gallery.db                  the index and the queue (SQLite, WAL)
    inputs/<sha256>.<ext>       uploaded images and clips, stored once by content, as uploaded
    runs/<id>/result.png        the result (a clip's: its first frame), parameters embedded (engine.pngmeta)
    runs/<id>/thumb.webp        the thumbnail
    runs/<id>/preview-<n>.jpg   intermediate images at iteration n
    runs/<id>/frame-<k>.png     a clip's finished frames, kept as they finish (a run continues after them)
    runs/<id>/animation.webp    a finished clip's animation, and animation.gif
    drafts/<owner>.json         each browser's Create-page draft (gallery.drafts)
    logs/                       the supervised workers' output (worker.supervisor)

Every file is renamed into place in the same transaction that commits the row naming it, so
rows never point at missing files; remove_orphans() removes what a crash left without a row.

Each job has its own module, each class built on the one before: core.py (folder, database,
transactions) → queries.py (reading runs) → inputs.py (input images) → queue.py (the queue's
state changes) → housekeeping.py (edits, deleting, orphans).
"""
from __future__ import annotations

from gallery.housekeeping import Housekeeping


class Gallery(Housekeeping):
    """One data folder: its images, runs and queue (the API in docs/architecture.md)."""

    def __enter__(self) -> Gallery:
        return self
