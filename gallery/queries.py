"""Reading runs: one run, pages of runs matching a RunFilter, counts, previews."""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from gallery.core import GalleryCore, check_limit
from gallery.db import STATUSES
from gallery.errors import GalleryError
from gallery.models import Run, run_from_row
from gallery.paths import as_run_id
from gallery.times import iso, to_utc

SORTS = {
    "newest": "runs.created DESC, runs.id DESC",
    "oldest": "runs.created ASC, runs.id ASC",
    "duration": "runs.duration IS NULL, runs.duration DESC, runs.id DESC",
    "title": "runs.title = '', runs.title COLLATE NOCASE ASC, runs.id DESC",
}


def fts_query(text: str) -> str:
    """A user's words as an FTS5 query: every word must match, each as a prefix ("star" finds
    starry_night.jpg), and FTS syntax (quotes, AND, NEAR, column:) is taken literally."""
    words = re.findall(r"\w+", text)
    return " ".join(f'"{w}"*' for w in words)


@dataclass(frozen=True)
class RunFilter:
    """Which runs: every field given must match; None leaves it out.

    `style`: a style image's name or sha256; `search`: words in the title, tags, content or
    style names (prefixes match); `tag`: words in the tags; `since`/`until`: when created
    (a datetime, or ISO text; without a zone, local time); `grown_from`: the prints made from
    that run's result."""

    status: str | tuple[str, ...] | None = None
    style: str | None = None
    favorite: bool | None = None
    search: str | None = None
    tag: str | None = None
    owner: str | None = None
    batch: str | None = None
    min_size: int | None = None
    max_size: int | None = None
    since: datetime | str | None = None
    until: datetime | str | None = None
    grown_from: int | None = None

    def where(self) -> tuple[str, list[Any]]:
        """The SQL condition on `runs` (with its leading WHERE, or "") and its arguments."""
        clauses: list[str] = []
        args: list[Any] = []
        if self.status is not None:
            wanted = [self.status] if isinstance(self.status, str) else list(self.status)
            unknown = [s for s in wanted if s not in STATUSES]
            if unknown:
                raise GalleryError(f"Unknown status {unknown[0]!r}; statuses are {', '.join(STATUSES)}.")
            clauses.append(f"runs.status IN ({', '.join('?' * len(wanted))})")
            args += wanted
        if self.style:
            clauses.append("runs.id IN (SELECT run_id FROM run_styles WHERE name = ? OR sha256 = ?)")
            args += [self.style, self.style]
        if self.favorite is not None:
            clauses.append("runs.favorite = ?")
            args.append(int(bool(self.favorite)))
        compared: tuple[tuple[str, Any, Callable[[Any], Any]], ...] = (
            ("runs.owner = ?", self.owner, str), ("runs.batch = ?", self.batch, str),
            ("runs.size >= ?", self.min_size, int), ("runs.size <= ?", self.max_size, int),
            ("runs.created >= ?", self.since, _created), ("runs.created < ?", self.until, _created),
            ("runs.grown_from = ?", self.grown_from, as_run_id))
        for clause, value, convert in compared:
            if value is not None:
                clauses.append(clause)
                args.append(convert(value))
        matches = [q for q in (fts_query(self.search or ""), self.tag and f"tags : ({fts_query(self.tag)})") if q]
        if matches:
            clauses.append("runs.id IN (SELECT rowid FROM runs_fts WHERE runs_fts MATCH ?)")
            args.append(" AND ".join(matches))
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


def _created(value: datetime | str) -> str:
    when = to_utc(value, naive="local")
    if when is None:
        raise GalleryError(f"Not a date or time: {value!r} (use ISO 8601, e.g. 2026-12-02 or 2026-12-02T18:30).")
    return iso(when)


class Queries(GalleryCore):
    def _styles(self, ids: list[int]) -> dict[int, list[tuple[str | None, str]]]:
        styles: dict[int, list[tuple[str | None, str]]] = {i: [] for i in ids}
        if ids:
            for row in self._rows(f"SELECT run_id, sha256, name FROM run_styles WHERE run_id IN "
                                  f"({', '.join('?' * len(ids))}) ORDER BY run_id, position", ids):
                styles[row["run_id"]].append((row["sha256"], row["name"]))
        return styles

    def _runs(self, rows: list[dict[str, Any]]) -> list[Run]:
        styles = self._styles([row["id"] for row in rows])
        return [run_from_row(row, styles[row["id"]], self.data_dir) for row in rows]

    def get(self, run_id: int) -> Run:
        """The run with id `run_id`; raises NotFound."""
        return self._runs([self._run_row(run_id)])[0]

    def list_runs(self, where: RunFilter | None = None, sort: str = "newest", limit: int = 50,
                  offset: int = 0) -> list[Run]:
        """A page of the runs matching `where` (all runs without one), in `sort` order (SORTS)."""
        return self._runs(self._page("*", where, sort, limit, offset))

    def run_ids(self, where: RunFilter | None = None, sort: str = "newest", limit: int = 50,
                offset: int = 0) -> list[int]:
        """The ids of list_runs' page, without reading the runs (the detail view's neighbours)."""
        return [row["id"] for row in self._page("id", where, sort, limit, offset)]

    def _page(self, columns: str, where: RunFilter | None, sort: str, limit: int, offset: int) -> list[dict[str, Any]]:
        if sort not in SORTS:
            raise GalleryError(f"Unknown sort {sort!r}; choose one of {', '.join(SORTS)}.")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise GalleryError(f"offset must be a whole number of at least 0, not {offset!r}.")
        sql, args = (where or RunFilter()).where()
        return self._rows(f"SELECT {columns} FROM runs{sql} ORDER BY {SORTS[sort]} LIMIT ? OFFSET ?",
                          [*args, check_limit(limit), offset])

    def prints_of(self, run_id: int) -> list[Run]:
        """The runs grown from run `run_id`'s result (Gallery.submit's grown_from), oldest first."""
        return self.list_runs(RunFilter(grown_from=as_run_id(run_id)), sort="oldest", limit=1000)

    def count_runs(self, where: RunFilter | None = None) -> int:
        sql, args = (where or RunFilter()).where()
        return self._count(f"SELECT count(*) AS n FROM runs{sql}", args)

    def has_result(self, sha256: str) -> bool:
        """Whether some run's result PNG has this sha256 (an import would be a copy)."""
        return self._row("SELECT 1 FROM runs WHERE result_sha256 = ?", [sha256]) is not None

    def previews(self, run_id: int) -> list[tuple[int, Path]]:
        """Intermediate images of a run, by iteration."""
        run_id = as_run_id(run_id)
        self._status(run_id)
        return [(row["iteration"], self._path(row["file"]))
                for row in self._rows("SELECT iteration, file FROM previews WHERE run_id = ? ORDER BY iteration", [run_id])]

    def queue_position(self, run_id: int) -> int | None:
        """1 for the next run to start; None when the run is not queued."""
        run_id = as_run_id(run_id)
        if self._status(run_id) != "queued":
            return None
        return self._count("SELECT count(*) AS n FROM runs WHERE status = 'queued' AND id <= ?", [run_id])
