"""Putting files into the data folder so a row never names a missing or half-written file.

Each file is written under a temporary name in its final folder and fsynced; the caller then
renames the batch into place and commits the row that names it in one database transaction
(see StagedFiles). Temporary names carry the writer's pid, so remove_orphans() can tell an abandoned
temporary file from one being written right now by another process.
"""
from __future__ import annotations

import io
import os
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

THUMB_SIDE = 256
PREVIEW_SIDE = 512
# A temporary file of a live process is left alone unless it is this old (a stuck writer).
STALE_TEMP_S = 24 * 3600

_TEMP_RE = re.compile(r"^\..+\.(\d+)\.[0-9a-f]{8}\.tmp$")


def temp_path(final: Path) -> Path:
    return final.with_name(f".{final.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def temp_owner(name: str) -> int | None:
    """The pid that wrote temporary file `name`, or None if `name` is not one of ours."""
    m = _TEMP_RE.match(name)
    return int(m.group(1)) if m else None


def write_temp(final: Path, data: bytes) -> Path:
    """Writes `data` to a fresh temporary file next to `final`, flushed to disk."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(final)
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        remove_quietly(tmp)
        raise
    return tmp


def fsync_dir(folder: Path) -> None:
    """Makes renames in `folder` durable (a rename lives in the directory, not the file)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def write_atomic(path: Path, data: bytes) -> None:
    """Replaces `path` with `data` in one step: readers see the old file or the new one."""
    tmp = write_temp(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        remove_quietly(tmp)
        raise
    fsync_dir(path.parent)


class StagedFiles:
    """Files written under temporary names, renamed into place together by place().

    Call place() inside the database transaction that records the files, and discard() if
    anything fails: it removes the temporary files and any already renamed into place (which
    no committed row names yet).
    """

    def __init__(self) -> None:
        self._pending: list[tuple[Path, Path]] = []
        self._placed: list[Path] = []

    def add(self, final: Path, data: bytes) -> None:
        self._pending.append((write_temp(final, data), final))

    def place(self) -> None:
        folders = set()
        while self._pending:
            tmp, final = self._pending[0]
            os.replace(tmp, final)
            self._pending.pop(0)
            self._placed.append(final)
            folders.add(final.parent)
        for folder in folders:
            fsync_dir(folder)

    def discard(self) -> None:
        for tmp, _ in self._pending:
            remove_quietly(tmp)
        for final in self._placed:
            remove_quietly(final)
        self._pending.clear()
        self._placed.clear()


def is_abandoned_temp(path: Path, pid_alive: Callable[[int], bool]) -> bool:
    """True for a temporary file whose writer is gone, or that is too old to be in progress."""
    owner = temp_owner(path.name)
    if owner is None:
        return False
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return False
    return not pid_alive(owner) or age > STALE_TEMP_S


def _encode(img: Image.Image, max_side: int, fmt: str, **options: Any) -> bytes:
    img = img.convert("RGB")
    img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


def thumbnail_bytes(img: Image.Image) -> bytes:
    return _encode(img, THUMB_SIDE, "WEBP", quality=82, method=4)


def lossless_png(img: Image.Image) -> bytes:
    """Lossless: a clip's finished frame is where the next one starts when a run continues."""
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "PNG", compress_level=3)
    return buf.getvalue()


def preview_bytes(img: Image.Image) -> bytes:
    return _encode(img, PREVIEW_SIDE, "JPEG", quality=80, optimize=True)
