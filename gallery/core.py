"""What every part of the Gallery stands on: the data folder, the database connection, the
write transaction, and reading rows. The jobs live in the classes built on this one
(queries.py, inputs.py, queue.py, housekeeping.py); store.py puts them together."""
from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gallery.db import DB_NAME, open_db, write_transaction
from gallery.errors import GalleryError, NotFound
from gallery.paths import as_run_id, resolve_data_dir

MAX_LIMIT = 10_000


class GalleryCore:
    """One data folder and its database. Safe to share between threads; any number of
    processes may open the same folder at once (SQLite locking serialises writers)."""

    def __init__(self, data_dir: str | os.PathLike | None = None):
        self.data_dir = resolve_data_dir(data_dir)
        self.db = open_db(self.data_dir / DB_NAME)
        self._lock = threading.RLock()

    def close(self) -> None:
        with self._lock:
            self.db.conn.close()

    def __enter__(self) -> GalleryCore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[None]:
        with self._lock, write_transaction(self.db):
            yield

    def _rows(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.db.query(sql, params))

    def _count(self, sql: str, params: Sequence[Any] = ()) -> int:
        """A `SELECT count(*) AS n …`'s n."""
        found = self._row(sql, params)
        return int(found["n"]) if found else 0

    def _row(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> dict[str, Any] | None:
        rows = self._rows(sql, params)
        return rows[0] if rows else None

    def _path(self, relative: str) -> Path:
        """A stored relative path as an absolute one; refuses anything leading outside the folder."""
        path = (self.data_dir / relative).resolve()
        if not path.is_relative_to(self.data_dir):
            raise GalleryError(f"The gallery database names a file outside the data folder: {relative!r}.")
        return path

    def run_dir(self, run_id: int) -> Path:
        return self.data_dir / "runs" / str(as_run_id(run_id))

    def _run_file(self, run_id: int, name: str) -> tuple[Path, str]:
        """A file of run `run_id`: its absolute path and the relative name the database keeps."""
        return self.run_dir(run_id) / name, f"runs/{run_id}/{name}"

    def _status(self, run_id: int) -> str:
        row = self._row("SELECT status FROM runs WHERE id = ?", [run_id])
        if row is None:
            raise NotFound(f"There is no run {run_id}.")
        return row["status"]

    def _run_row(self, run_id: int) -> dict[str, Any]:
        row = self._row("SELECT * FROM runs WHERE id = ?", [as_run_id(run_id)])
        if row is None:
            raise NotFound(f"There is no run {run_id}.")
        return row


def check_limit(limit: Any) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise GalleryError(f"limit must be a whole number from 1 to {MAX_LIMIT}, not {limit!r}.")
    return limit


def floats(values: dict[str, Any] | None) -> dict[str, float]:
    return {str(k): float(v) for k, v in (values or {}).items()}
