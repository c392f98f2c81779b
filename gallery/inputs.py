"""Input images and clips: stored once by sha256 after checking they decode, listed for re-use,
and copied in from params that name files outside the gallery."""
from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path

from engine import masks
from engine.clips import clip_format, clip_info
from engine.images import ImageError, load_image, read_bytes, sniff
from engine.params import ParamsError
from gallery import files
from gallery.core import check_limit
from gallery.errors import GalleryError, NotFound
from gallery.models import InputImage, input_from_row
from gallery.names import display_name
from gallery.paths import relative_to, stored_input
from gallery.queries import Queries
from gallery.times import now_iso

_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp", "TIFF": "tif", "BMP": "bmp",
               "MP4": "mp4", "MOV": "mov", "WEBM": "webm"}
VIDEO_FORMATS = ("MP4", "MOV", "WEBM")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def _kind_flags(kind: str | None) -> tuple[int, int]:
    if kind not in (None, "content", "style"):
        raise GalleryError(f"An input's kind is 'content' or 'style', not {kind!r}.")
    return int(kind == "content"), int(kind == "style")


class Inputs(Queries):
    def add_input(self, data: bytes, name: str, kind: str | None = None,
                  waiting: Callable[[], None] | None = None) -> InputImage:
        """Stores an uploaded image or clip (an animated GIF or WebP, a video) once, by sha256,
        as uploaded, after checking it decodes (every frame of a clip, one at a time, within
        engine.clips' bounds); raises ImageError. `kind` ("content" or "style") only marks what
        it was uploaded as, for list_inputs. `waiting`: called when the clip must wait for
        another to be checked first (engine.clips.decode_slot)."""
        flags = _kind_flags(kind)
        data = bytes(data)
        sha = hashlib.sha256(data).hexdigest()
        now = now_iso()
        if self.get_input_or_none(sha) is not None:  # the same upload again: checked already
            with self._write():
                self._touch_input(sha, flags, now)
            return self.get_input(sha)
        fmt = clip_format(data)
        if fmt:
            info = clip_info(data, waiting)
            (width, height), frames, duration_ms = info.size, info.frames, info.duration_ms
        else:
            width, height = load_image(data).size
            fmt, frames, duration_ms = sniff(data) or "unknown", 1, 0
        relative = f"inputs/{sha}.{_EXTENSIONS.get(fmt, 'img')}"
        staged = files.StagedFiles()
        try:
            staged.add(self.data_dir / relative, data)
            with self._write():
                if self._row("SELECT 1 FROM inputs WHERE sha256 = ?", [sha]):  # another writer was first
                    staged.discard()
                    self._touch_input(sha, flags, now)
                else:
                    staged.place()
                    self.db.execute(
                        "INSERT INTO inputs (sha256, name, file, format, width, height, file_size, "
                        "used_as_content, used_as_style, created, last_used, frames, duration_ms) "
                        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                        [sha, display_name(name), relative, fmt, width, height, len(data),
                         flags[0], flags[1], now, now, frames, duration_ms])
        except BaseException:
            staged.discard()
            raise
        return self.get_input(sha)

    def _touch_input(self, sha: str, flags: tuple[int, int], now: str) -> None:
        self.db.execute("UPDATE inputs SET last_used = ?, used_as_content = max(used_as_content, ?), "
                        "used_as_style = max(used_as_style, ?) WHERE sha256 = ?", [now, *flags, sha])

    def get_input_or_none(self, sha256: str) -> InputImage | None:
        if not isinstance(sha256, str) or not _SHA256_RE.match(sha256):
            raise GalleryError(f"Not an image id (a sha256 in hex): {sha256!r}.")
        row = self._row("SELECT * FROM inputs WHERE sha256 = ?", [sha256])
        return input_from_row(row, self.data_dir) if row else None

    def get_input(self, sha256: str) -> InputImage:
        found = self.get_input_or_none(sha256)
        if found is None:
            raise NotFound(f"There is no input image {sha256[:12]}… in this gallery.")
        return found

    def input_path(self, sha256: str) -> Path:
        return self.get_input(sha256).path

    def list_inputs(self, kind: str | None = None, limit: int = 100) -> list[InputImage]:
        """Earlier uploads, most recently used first; `kind` keeps those used as content/style."""
        _kind_flags(kind)
        where = {None: "", "content": "WHERE used_as_content", "style": "WHERE used_as_style"}[kind]
        rows = self._rows(f"SELECT * FROM inputs {where} ORDER BY last_used DESC, rowid DESC LIMIT ?",
                          [check_limit(limit)])
        return [input_from_row(row, self.data_dir) for row in rows]

    def _ingest(self, path: str, field: str, kind: str | None) -> InputImage:
        """The stored input for an image path of some params: a gallery input as is, any other
        file copied in (the run must not depend on files outside the gallery)."""
        sha = stored_input(relative_to(Path(path), self.data_dir) or "")
        found = sha and self.get_input_or_none(sha)
        if found:
            return found
        try:
            return self.add_input(read_bytes(path), Path(path).name, kind)  # bounded, regular files only
        except ImageError as e:
            raise ParamsError({field: f"{Path(path).name}: {e}"}) from e

    def _relative_mask(self, path: str) -> str:
        """A mask stored as an input (like a style), checked as a mask; its path in the folder."""
        stored = self._ingest(path, "style_masks", None)
        try:
            masks.load_mask(stored.path, f"The mask {stored.name}")
        except ImageError as e:
            raise ParamsError({"style_masks": str(e)}) from e
        found = relative_to(stored.path, self.data_dir)
        assert found is not None, "a stored input lies in the data folder"
        return found
