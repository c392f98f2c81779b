"""Editing and tidying runs: favourites, titles and tags, deleting, exporting a result, and
removing the files that crashes left behind."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from gallery import files, procs
from gallery.errors import GalleryError
from gallery.names import MAX_TITLE, clean_tags, clean_text
from gallery.paths import as_run_id
from gallery.queue import Queue

# Every file a row names; anything else under inputs/ and runs/ is an orphan.
NAMED_FILES_SQL = " UNION ALL ".join(
    ["SELECT file FROM inputs", "SELECT file FROM previews", "SELECT file FROM frames"]
    + [f"SELECT {column} AS file FROM runs WHERE {column} IS NOT NULL"
       for column in ("result_file", "thumb_file", "animation_file", "gif_file")])


class Housekeeping(Queue):
    def set_favorite(self, run_id: int, favorite: bool = True) -> None:
        self._update(run_id, favorite=int(bool(favorite)))

    def set_title_tags(self, run_id: int, title: str, tags: str | list[str]) -> None:
        self._update(run_id, title=clean_text(title, MAX_TITLE), tags=clean_tags(tags))

    def set_grown_from(self, run_id: int, source: int | None) -> None:
        """Records that run `run_id` is a print grown from run `source`'s result (None: from none)."""
        if source is not None:
            self._status(as_run_id(source))  # NotFound for a run that is not here
        self._update(run_id, grown_from=None if source is None else as_run_id(source))

    def _update(self, run_id: int, **values: Any) -> None:
        run_id = as_run_id(run_id)
        with self._write():
            self._status(run_id)
            sets = ", ".join(f"{column} = ?" for column in values)
            self.db.execute(f"UPDATE runs SET {sets} WHERE id = ?", [*values.values(), run_id])

    def delete(self, run_id: int) -> None:
        """Removes a run's row, then its files. A running run must be cancelled first."""
        run_id = as_run_id(run_id)
        with self._write():
            if self._status(run_id) == "running":
                raise GalleryError(f"Run {run_id} is running; cancel it first.")
            self.db.execute("DELETE FROM runs WHERE id = ?", [run_id])
        # After the commit: a crash in between leaves files without a row, which remove_orphans() removes.
        shutil.rmtree(self.run_dir(run_id), ignore_errors=True)

    def export_png(self, run_id: int) -> bytes:
        """The result PNG, parameters embedded as written by the engine's pngmeta."""
        run = self.get(run_id)
        if run.status != "done" or run.result_path is None:
            raise GalleryError(f"Run {run.id} is {run.status}; only finished runs have a result to export.")
        return run.result_path.read_bytes()

    def remove_orphans(self) -> list[Path]:
        """Removes what crashes left behind: temporary files of dead writers and files no row
        names. Holds the write lock meanwhile, so no other process is between renaming a file
        into place and committing its row. Returns what it removed."""
        removed: list[Path] = []
        with self._write():
            named = {row["file"] for row in self._rows(NAMED_FILES_SQL)}
            ids = {row["id"] for row in self._rows("SELECT id FROM runs")}
            for folder in (self.data_dir / "inputs", self.data_dir / "runs"):
                if not folder.is_dir():
                    continue
                for path in sorted(folder.rglob("*"), reverse=True):  # files before their folders
                    if self._is_orphan(path, named, ids):
                        removed.append(path)
                        if path.is_dir():
                            path.rmdir()
                        else:
                            files.remove_quietly(path)
        return removed

    def _is_orphan(self, path: Path, named: set[str], ids: set[int]) -> bool:
        relative = path.relative_to(self.data_dir).as_posix()
        parts = relative.split("/")
        if parts[0] == "runs" and not (len(parts) > 1 and parts[1].isdigit()):
            return False  # not a folder we made; leave it
        if path.is_symlink() or path.is_file():
            if files.temp_owner(path.name) is not None:
                return files.is_abandoned_temp(path, procs.pid_alive)
            return relative not in named
        if path.is_dir() and parts[0] == "runs":
            return (len(parts) == 2 and int(parts[1]) not in ids and not any(path.iterdir()))
        return False
