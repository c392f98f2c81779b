"""The Gallery: input images, runs, their result files and the job queue, in one data folder.

Layout of the data folder (nothing is ever written outside it):

    gallery.db                  the index and the queue (SQLite, WAL)
    inputs/<sha256>.<ext>       uploaded images, stored once by content
    runs/<id>/result.png        the result, parameters embedded (engine.pngmeta)
    runs/<id>/thumb.webp        256 px thumbnail
    runs/<id>/preview-<n>.jpg   intermediate images at iteration n

Every file is renamed into place in the same transaction that commits the row naming it, so
rows never point at missing files; sweep() removes what a crash left without a row.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from PIL import Image

from engine import masks, pngmeta
from engine.images import ImageError, load_image, sniff
from engine.params import Params, ParamsError, validate
from gallery import files, procs
from gallery.db import DB_NAME, STATUSES, open_db, write_transaction
from gallery.errors import GalleryError, NotFound
from gallery.models import InputImage, Run, absolute_params, input_from_row, input_sha256, now_iso, run_from_row
from gallery.names import MAX_TITLE, clean_tags, clean_text, display_name

DATA_ENV = "STUDIO_DATA"
DEFAULT_DATA_DIR = "data"
PROGRESS_INTERVAL_S = 0.5
# A running job of another host cannot be checked by pid; without a sign of life for this long
# it is taken for dead.
FOREIGN_STALE_S = 15 * 60
MAX_ERROR = 2000
SORTS = {
    "newest": "runs.created DESC, runs.id DESC",
    "oldest": "runs.created ASC, runs.id ASC",
    "duration": "runs.duration IS NULL, runs.duration DESC, runs.id DESC",
    "title": "runs.title = '', runs.title COLLATE NOCASE ASC, runs.id DESC",
}
_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp", "TIFF": "tif", "BMP": "bmp"}
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_INPUT_FILE_RE = re.compile(r"^inputs/([0-9a-f]{64})\.[a-z]+$")


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data folder: the argument, else $STUDIO_DATA, else ./data; created if missing."""
    path = Path(data_dir if data_dir is not None else os.environ.get(DATA_ENV) or DEFAULT_DATA_DIR)
    path = path.expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise GalleryError(f"The data folder {path} is a file; choose a folder (STUDIO_DATA or --data).")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GalleryError(f"Cannot create the data folder {path}: {e.strerror or e}.") from e
    return path


def run_id(value: Any) -> int:
    """A run id from an int or a string of digits; GalleryError for anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise GalleryError(f"A run id is a whole number, not {value!r}.")
    if isinstance(value, str):
        if not value.strip().isdigit() or not value.strip().isascii():
            raise GalleryError(f"A run id is a whole number, not {value!r}.")
        value = int(value)
    if not 0 < value < 2**63:  # well formed, but no row can have it: not found (?run=0 in a URL)
        raise NotFound(f"There is no run {value}: ids start at 1.")
    return value


def _as_iso(value: datetime | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if value.tzinfo is None:
        value = value.astimezone()  # naive: local time, as a person typed it
    return value.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def fts_query(text: str) -> str:
    """A user's words as an FTS5 query: every word must match, each as a prefix ("star" finds
    starry_night.jpg), and FTS syntax (quotes, AND, NEAR, column:) is taken literally."""
    words = re.findall(r"\w+", text)
    return " ".join(f'"{w}"*' for w in words)


class Gallery:
    """One data folder. Safe to share between threads; any number of processes may open the
    same folder at once (SQLite locking serialises writers)."""

    def __init__(self, data_dir: str | os.PathLike | None = None):
        self.data_dir = resolve_data_dir(data_dir)
        self.db = open_db(self.data_dir / DB_NAME)
        self._lock = threading.RLock()
        self._last_progress: dict[int, float] = {}
        self._pending_preview: dict[int, tuple[int, Image.Image]] = {}
        self._unsaved_progress: dict[int, tuple[int, int, str]] = {}

    def close(self) -> None:
        with self._lock:
            self.db.conn.close()

    def __enter__(self) -> "Gallery":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- plumbing -------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[None]:
        with self._lock, write_transaction(self.db):
            yield

    def _rows(self, sql: str, params: Iterable[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.db.query(sql, params))

    def _row(self, sql: str, params: Iterable[Any] | dict[str, Any] = ()) -> dict[str, Any] | None:
        rows = self._rows(sql, params)
        return rows[0] if rows else None

    def _path(self, relative: str) -> Path:
        """A stored relative path as an absolute one; refuses anything leading outside the folder."""
        path = (self.data_dir / relative).resolve()
        if not path.is_relative_to(self.data_dir):
            raise GalleryError(f"The gallery database names a file outside the data folder: {relative!r}.")
        return path

    def run_dir(self, rid: int) -> Path:
        return self.data_dir / "runs" / str(run_id(rid))

    def _run_file(self, rid: int, name: str) -> tuple[Path, str]:
        return self.run_dir(rid) / name, f"runs/{rid}/{name}"

    # ---- input images -----------------------------------------------------------------------

    def add_input(self, data: bytes, name: str, kind: str | None = None) -> InputImage:
        """Stores an uploaded image once (by sha256) after checking it decodes; raises ImageError.
        `kind` ("content" or "style") only marks what it was uploaded as, for list_inputs."""
        flags = self._kind_flags(kind)
        data = bytes(data)
        sha = hashlib.sha256(data).hexdigest()
        now = now_iso()
        if self.get_input_or_none(sha) is not None:  # the same upload again: checked already
            with self._write():
                self._touch_input(sha, flags, now)
            return self.get_input(sha)
        image = load_image(data)
        fmt = sniff(data) or "unknown"
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
                        "used_as_content, used_as_style, created, last_used) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                        [sha, display_name(name), relative, fmt, image.width, image.height, len(data),
                         flags[0], flags[1], now, now])
        except BaseException:
            staged.discard()
            raise
        return self.get_input(sha)

    @staticmethod
    def _kind_flags(kind: str | None) -> tuple[int, int]:
        if kind not in (None, "content", "style"):
            raise GalleryError(f"An input's kind is 'content' or 'style', not {kind!r}.")
        return int(kind == "content"), int(kind == "style")

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
        self._kind_flags(kind)
        where = {None: "", "content": "WHERE used_as_content", "style": "WHERE used_as_style"}[kind]
        rows = self._rows(f"SELECT * FROM inputs {where} ORDER BY last_used DESC, rowid DESC LIMIT ?",
                          [_limit(limit)])
        return [input_from_row(row, self.data_dir) for row in rows]

    def _ingest(self, path: str, field: str, kind: str) -> InputImage:
        """The stored input for an image path of some params: a gallery input as is, any other
        file copied in (the run must not depend on files outside the gallery)."""
        relative = _relative_to(Path(path), self.data_dir)
        match = _INPUT_FILE_RE.match(relative or "")
        if match:
            found = self.get_input_or_none(match.group(1))
            if found is not None:
                return found
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise ParamsError({field: f"cannot read {Path(path).name}: {e.strerror or e}"}) from e
        try:
            return self.add_input(data, Path(path).name, kind)
        except ImageError as e:
            raise ParamsError({field: f"{Path(path).name}: {e}"}) from e

    def _relative_mask(self, path: str) -> str:
        """A mask stored as an input (like a style), checked as a mask; its path in the folder."""
        stored = self._ingest(path, "style_masks", None)
        try:
            masks.load_mask(stored.path, f"The mask {stored.name}")
        except ImageError as e:
            raise ParamsError({"style_masks": str(e)}) from e
        return _relative_to(stored.path, self.data_dir)

    # ---- queue ------------------------------------------------------------------------------

    def submit(self, params: Params, owner: str = "", batch: str | None = None,
               title: str = "", tags: str = "") -> int:
        """Queues a run; returns its id. Raises ParamsError (also for unreadable images)."""
        validate(params)
        content = self._ingest(params.content, "content", "content")
        styles = [self._ingest(s, "styles", "style") for s in params.styles]
        mask_entries = [m if masks.is_everywhere(m) else self._relative_mask(m) for m in params.style_masks]
        stored = params.with_changes(content=_relative_to(content.path, self.data_dir),
                                     styles=tuple(_relative_to(s.path, self.data_dir) for s in styles),
                                     style_masks=tuple(mask_entries))
        with self._write():
            now = now_iso()
            self._touch_input(content.sha256, (1, 0), now)
            for style in styles:
                self._touch_input(style.sha256, (0, 1), now)
            return self._insert_run(
                stored, content_name=content.name, content_sha256=content.sha256,
                styles=[(s.sha256, s.name) for s in styles], owner=owner, batch=batch, title=title, tags=tags)

    def _insert_run(self, params: Params, *, content_name: str, content_sha256: str | None,
                    styles: list[tuple[str | None, str]], owner: str = "", batch: str | None = None,
                    title: str = "", tags: str = "", **columns: Any) -> int:
        """Inserts a run row (queued unless `columns` say otherwise); call inside _write()."""
        row = {
            "status": "queued", "owner": clean_text(owner, 100), "batch": batch and clean_text(batch, 100),
            "title": clean_text(title, MAX_TITLE), "tags": clean_tags(tags),
            "content_name": content_name, "content_sha256": content_sha256,
            "style_names": json.dumps([name for _, name in styles]),
            "size": params.size, "iterations": params.iterations, "optimizer": params.optimizer,
            "style_weight": params.style_weight, "content_weight": params.content_weight,
            "tv_weight": params.tv_weight, "seed": params.seed, "device": params.device,
            "params_json": params.to_json(), "created": now_iso(), "total": params.total_iterations(),
            **columns,
        }
        names = ", ".join(row)
        cursor = self.db.execute(f"INSERT INTO runs ({names}) VALUES ({', '.join('?' * len(row))})",
                                 list(row.values()))
        rid = cursor.lastrowid
        self.db.conn.executemany("INSERT INTO run_styles (run_id, position, sha256, name) VALUES (?,?,?,?)",
                                 [(rid, i, sha, name) for i, (sha, name) in enumerate(styles)])
        return rid

    def claim_next(self, worker: str = "", devices: Iterable[str] | None = None) -> Run | None:
        """Atomically takes the oldest queued run (optionally only those asking for one of
        `devices`) and marks it running by this process; None when there is none."""
        where, args = "status = 'queued'", []
        if devices is not None:
            devices = list(devices)
            where += f" AND device IN ({', '.join('?' * len(devices))})"
            args = devices
        return self._claim(f"SELECT id FROM runs WHERE {where} ORDER BY id LIMIT 1", args, worker)

    def claim(self, rid: int, worker: str = "") -> Run | None:
        """Takes queued run `rid` (as claim_next does); None if it is no longer queued."""
        return self._claim("SELECT id FROM runs WHERE id = ? AND status = 'queued'", [run_id(rid)], worker)

    def _claim(self, select_sql: str, args: list[Any], worker: str) -> Run | None:
        pid = os.getpid()
        now = now_iso()
        with self._write():
            rows = self.db.execute(
                f"UPDATE runs SET status = 'running', started = ?, heartbeat = ?, worker = ?, worker_host = ?, "
                f"worker_pid = ?, worker_started = ?, iteration = 0 "
                f"WHERE id = ({select_sql}) AND status = 'queued' RETURNING id",
                [now, now, clean_text(worker, 200), procs.HOST, pid, procs.start_ticks(pid), *args]).fetchall()
        return self.get(rows[0][0]) if rows else None

    def report_progress(self, rid: int, iteration: int, total: int, losses: dict[str, float],
                        preview: Image.Image | None = None) -> bool:
        """Records how far a running job is, at most every PROGRESS_INTERVAL_S (the final
        iteration always); returns whether it was written. A preview that falls between writes
        is kept and written with the next one, so watchers always get the latest picture."""
        rid = run_id(rid)
        progress = (int(iteration), int(total), json.dumps(_floats(losses)))
        with self._lock:
            if preview is not None:
                self._pending_preview[rid] = (iteration, preview)
            last = self._last_progress.get(rid)
            now = time.monotonic()
            if last is not None and now - last < PROGRESS_INTERVAL_S and iteration < total:
                self._unsaved_progress[rid] = progress  # recorded if the run ends before the next write
                return False
            self._last_progress[rid] = now
            self._unsaved_progress.pop(rid, None)
            pending = self._pending_preview.pop(rid, None)
        staged = files.StagedFiles()
        try:
            stored = self._stage_previews(rid, [pending] if pending else [], staged)
            with self._write():
                changed = self.db.execute(
                    "UPDATE runs SET iteration = ?, total = ?, losses_json = ?, heartbeat = ? "
                    "WHERE id = ? AND status = 'running'", [*progress, now_iso(), rid]).rowcount
                if changed and stored:
                    self._record_previews(rid, stored, staged)
                else:
                    staged.discard()
        except BaseException:
            staged.discard()
            raise
        return bool(changed)

    def _stage_previews(self, rid: int, previews: list[tuple[int, Image.Image]],
                        staged: files.StagedFiles) -> list[tuple[int, str]]:
        have = {row["iteration"] for row in self._rows("SELECT iteration FROM previews WHERE run_id = ?", [rid])}
        stored = []
        for iteration, image in previews:
            if iteration in have:
                continue
            path, relative = self._run_file(rid, f"preview-{int(iteration):06d}.jpg")
            staged.add(path, files.preview_bytes(image))
            stored.append((int(iteration), relative))
            have.add(iteration)
        return stored

    def _record_previews(self, rid: int, stored: list[tuple[int, str]], staged: files.StagedFiles) -> None:
        staged.place()
        self.db.conn.executemany("INSERT INTO previews (run_id, iteration, file) VALUES (?,?,?)",
                                 [(rid, it, rel) for it, rel in stored])
        self.db.execute("UPDATE runs SET preview_file = (SELECT file FROM previews WHERE run_id = ? "
                        "ORDER BY iteration DESC LIMIT 1) WHERE id = ?", [rid, rid])

    def finish(self, rid: int, result: Any) -> None:
        """Saves an engine.transfer.Result: files renamed into place, then the row says done.
        Raises GalleryError if the run is not running (then nothing is kept)."""
        rid = run_id(rid)
        row = self._run_row(rid)
        png = pngmeta.result_png(result.image, _result_info(result, row))
        staged = files.StagedFiles()
        try:
            result_path, result_rel = self._run_file(rid, "result.png")
            thumb_path, thumb_rel = self._run_file(rid, "thumb.webp")
            staged.add(result_path, png)
            staged.add(thumb_path, files.thumbnail_bytes(result.image))
            previews = self._stage_previews(rid, list(result.previews or []), staged)
            with self._write():
                status = self._status(rid)
                if status != "running":
                    raise GalleryError(f"Run {rid} is {status}, not running; its result was not saved.")
                if previews:
                    self._record_previews(rid, previews, staged)
                staged.place()
                self.db.execute(
                    "UPDATE runs SET status = 'done', finished = ?, duration = ?, error = NULL, "
                    "iteration = total, losses_json = ?, timings_json = ?, device = ?, weights_name = ?, "
                    "weights_sha256 = ?, result_file = ?, result_sha256 = ?, thumb_file = ?, "
                    "cancel_requested = 0 WHERE id = ?",
                    [now_iso(), _duration(result, row), json.dumps(_floats(result.losses)),
                     json.dumps(_floats(result.timings)), str(result.device), result.weights_name,
                     result.weights_sha256, result_rel, hashlib.sha256(png).hexdigest(), thumb_rel, rid])
        except BaseException:
            staged.discard()
            raise
        finally:
            self._forget_progress(rid)

    def _forget_progress(self, rid: int) -> tuple[int, int, str] | None:
        """Drops the throttling state of a run that ended; returns progress not yet written."""
        with self._lock:
            self._last_progress.pop(rid, None)
            self._pending_preview.pop(rid, None)
            return self._unsaved_progress.pop(rid, None)

    def _end(self, rid: int, status: str, error: str | None, from_statuses: tuple[str, ...]) -> bool:
        rid = run_id(rid)
        unsaved = self._forget_progress(rid)
        with self._write():
            self._status(rid)  # NotFound for an unknown id
            changed = self.db.execute(
                f"UPDATE runs SET status = ?, error = ?, finished = ?, cancel_requested = 0 "
                f"WHERE id = ? AND status IN ({', '.join('?' * len(from_statuses))})",
                [status, error and error[:MAX_ERROR], now_iso(), rid, *from_statuses]).rowcount
            if changed and unsaved:  # where it stopped, not where the last throttled write was
                self.db.execute("UPDATE runs SET iteration = ?, total = ?, losses_json = ? WHERE id = ?",
                                [*unsaved, rid])
        return bool(changed)

    def fail(self, rid: int, message: str) -> bool:
        """A queued or running run becomes failed with `message`; returns whether it changed."""
        return self._end(rid, "failed", str(message) or "failed", ("running", "queued"))

    def mark_cancelled(self, rid: int) -> bool:
        return self._end(rid, "cancelled", None, ("running", "queued"))

    def mark_interrupted(self, rid: int, message: str) -> bool:
        """A running run whose worker stopped before it finished."""
        return self._end(rid, "interrupted", message, ("running",))

    def request_cancel(self, rid: int) -> str:
        """Asks for a run to stop: a queued run is cancelled at once, a running one flagged (its
        worker checks every iteration). Returns the run's status afterwards."""
        rid = run_id(rid)
        with self._write():
            status = self._status(rid)
            if status == "queued":
                self.db.execute("UPDATE runs SET status = 'cancelled', finished = ? WHERE id = ?", [now_iso(), rid])
                return "cancelled"
            if status == "running":
                self.db.execute("UPDATE runs SET cancel_requested = 1 WHERE id = ?", [rid])
            return status

    def cancel_requested(self, rid: int) -> bool:
        row = self._row("SELECT cancel_requested, status FROM runs WHERE id = ?", [run_id(rid)])
        return row is None or bool(row["cancel_requested"]) or row["status"] != "running"

    def recover_interrupted(self) -> list[int]:
        """Running rows whose worker process is gone become interrupted; returns their ids.
        Workers on this host are checked by pid (and start time); those of other hosts by how
        long ago they were last heard of (FOREIGN_STALE_S)."""
        stale_before = datetime.fromtimestamp(time.time() - FOREIGN_STALE_S, timezone.utc)
        dead = []
        for row in self._rows("SELECT id, worker_host, worker_pid, worker_started, heartbeat "
                              "FROM runs WHERE status = 'running'"):
            if row["worker_host"] == procs.HOST:
                if not procs.pid_alive(row["worker_pid"] or 0, row["worker_started"]):
                    dead.append((row["id"], f"process {row['worker_pid']} is gone"))
            elif not row["heartbeat"] or datetime.fromisoformat(row["heartbeat"]) < stale_before:
                dead.append((row["id"], f"no sign of life from host {row['worker_host']} since {row['heartbeat']}"))
        return [rid for rid, why in dead
                if self.mark_interrupted(rid, f"The worker stopped before the run finished ({why}).")]

    def requeue(self, rid: int) -> int:
        """Queues a new run with the same params, title and tags as an interrupted, failed or
        cancelled one (which stays, for the record); returns the new id."""
        rid = run_id(rid)
        with self._write():
            row = self._run_row(rid)
            if row["status"] not in ("interrupted", "failed", "cancelled"):
                raise GalleryError(f"Run {rid} is {row['status']}; only interrupted, failed or cancelled runs "
                                   "can be queued again.")
            styles = self._styles([rid])[rid]
            params = absolute_params(row["params_json"], self.data_dir)
            mask_shas = [input_sha256(m) or "" for m in params.style_masks if not masks.is_everywhere(m)]
            missing = [sha for sha in [row["content_sha256"], *(s for s, _ in styles), *mask_shas]
                       if not sha or self.get_input_or_none(sha) is None]
            if missing:
                raise GalleryError(f"Run {rid}'s input images are not in this gallery, so it cannot run again.")
            return self._insert_run(
                Params.from_json(row["params_json"]), content_name=row["content_name"],
                content_sha256=row["content_sha256"], styles=styles, owner=row["owner"], batch=row["batch"],
                title=row["title"], tags=row["tags"], requeued_from=rid)

    def queue_position(self, rid: int) -> int | None:
        """1 for the next run to start; None when the run is not queued."""
        rid = run_id(rid)
        if self._status(rid) != "queued":
            return None
        return self._row("SELECT count(*) AS n FROM runs WHERE status = 'queued' AND id <= ?", [rid])["n"]

    # ---- reading ----------------------------------------------------------------------------

    def _status(self, rid: int) -> str:
        row = self._row("SELECT status FROM runs WHERE id = ?", [rid])
        if row is None:
            raise NotFound(f"There is no run {rid}.")
        return row["status"]

    def _run_row(self, rid: int) -> dict[str, Any]:
        row = self._row("SELECT * FROM runs WHERE id = ?", [run_id(rid)])
        if row is None:
            raise NotFound(f"There is no run {rid}.")
        return row

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

    def get(self, rid: int) -> Run:
        """The run with id `rid`; raises NotFound."""
        return self._runs([self._run_row(rid)])[0]

    def _filters(self, status: str | Iterable[str] | None = None, style: str | None = None,
                 favorite: bool | None = None, search: str | None = None, owner: str | None = None,
                 min_size: int | None = None, max_size: int | None = None,
                 since: datetime | str | None = None, until: datetime | str | None = None,
                 tag: str | None = None, batch: str | None = None) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        args: list[Any] = []
        if status is not None:
            wanted = [status] if isinstance(status, str) else list(status)
            unknown = [s for s in wanted if s not in STATUSES]
            if unknown:
                raise GalleryError(f"Unknown status {unknown[0]!r}; statuses are {', '.join(STATUSES)}.")
            clauses.append(f"runs.status IN ({', '.join('?' * len(wanted))})")
            args += wanted
        if style:
            clauses.append("runs.id IN (SELECT run_id FROM run_styles WHERE name = ? OR sha256 = ?)")
            args += [style, style]
        if favorite is not None:
            clauses.append("runs.favorite = ?")
            args.append(int(bool(favorite)))
        compared = (("runs.owner = ?", owner, str), ("runs.batch = ?", batch, str),
                    ("runs.size >= ?", min_size, int), ("runs.size <= ?", max_size, int),
                    ("runs.created >= ?", since, _as_iso), ("runs.created < ?", until, _as_iso))
        for clause, value, convert in compared:
            if value is not None:
                clauses.append(clause)
                args.append(convert(value))
        matches = [q for q in (fts_query(search or ""), tag and f"tags : ({fts_query(tag)})") if q]
        if matches:
            clauses.append("runs.id IN (SELECT rowid FROM runs_fts WHERE runs_fts MATCH ?)")
            args.append(" AND ".join(matches))
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args

    def list_runs(self, status: str | Iterable[str] | None = None, style: str | None = None,
                  favorite: bool | None = None, search: str | None = None, owner: str | None = None,
                  min_size: int | None = None, max_size: int | None = None,
                  since: datetime | str | None = None, until: datetime | str | None = None,
                  sort: str = "newest", limit: int = 50, offset: int = 0, *,
                  tag: str | None = None, batch: str | None = None) -> list[Run]:
        """Runs matching every filter given. `style`: a style image's name or sha256; `search`:
        words in title, tags, content or style names (prefixes match); `since`/`until`: created."""
        if sort not in SORTS:
            raise GalleryError(f"Unknown sort {sort!r}; choose one of {', '.join(SORTS)}.")
        where, args = self._filters(status, style, favorite, search, owner, min_size, max_size, since, until,
                                    tag, batch)
        if not isinstance(offset, int) or offset < 0:
            raise GalleryError(f"offset must be a whole number of at least 0, not {offset!r}.")
        rows = self._rows(f"SELECT * FROM runs{where} ORDER BY {SORTS[sort]} LIMIT ? OFFSET ?",
                          [*args, _limit(limit), offset])
        return self._runs(rows)

    def count_runs(self, status: str | Iterable[str] | None = None, style: str | None = None,
                   favorite: bool | None = None, search: str | None = None, owner: str | None = None,
                   min_size: int | None = None, max_size: int | None = None,
                   since: datetime | str | None = None, until: datetime | str | None = None, *,
                   tag: str | None = None, batch: str | None = None) -> int:
        where, args = self._filters(status, style, favorite, search, owner, min_size, max_size, since, until,
                                    tag, batch)
        return self._row(f"SELECT count(*) AS n FROM runs{where}", args)["n"]

    def previews(self, rid: int) -> list[tuple[int, Path]]:
        """Intermediate images of a run, by iteration."""
        rid = run_id(rid)
        self._status(rid)
        return [(row["iteration"], self._path(row["file"]))
                for row in self._rows("SELECT iteration, file FROM previews WHERE run_id = ? ORDER BY iteration", [rid])]

    # ---- editing ----------------------------------------------------------------------------

    def set_favorite(self, rid: int, favorite: bool = True) -> None:
        self._update(rid, favorite=int(bool(favorite)))

    def set_title_tags(self, rid: int, title: str, tags: str | list[str]) -> None:
        self._update(rid, title=clean_text(title, MAX_TITLE), tags=clean_tags(tags))

    def _update(self, rid: int, **values: Any) -> None:
        rid = run_id(rid)
        with self._write():
            self._status(rid)
            sets = ", ".join(f"{column} = ?" for column in values)
            self.db.execute(f"UPDATE runs SET {sets} WHERE id = ?", [*values.values(), rid])

    def delete(self, rid: int) -> None:
        """Removes a run's row, then its files. A running run must be cancelled first."""
        rid = run_id(rid)
        with self._write():
            if self._status(rid) == "running":
                raise GalleryError(f"Run {rid} is running; cancel it first.")
            self.db.execute("DELETE FROM runs WHERE id = ?", [rid])
        # After the commit: a crash in between leaves files without a row, which sweep() removes.
        shutil.rmtree(self.run_dir(rid), ignore_errors=True)

    # ---- export -----------------------------------------------------------------------------

    def export_png(self, rid: int) -> bytes:
        """The result PNG, parameters embedded as written by the engine's pngmeta."""
        run = self.get(rid)
        if run.status != "done" or run.result_path is None:
            raise GalleryError(f"Run {run.id} is {run.status}; only finished runs have a result to export.")
        return run.result_path.read_bytes()

    # ---- housekeeping -----------------------------------------------------------------------

    def sweep(self) -> list[Path]:
        """Removes what crashes left behind: temporary files of dead writers and files no row
        names. Holds the write lock meanwhile, so no other process is between renaming a file
        into place and committing its row. Returns what it removed."""
        removed: list[Path] = []
        with self._write():
            named = {row["file"] for row in self._rows(
                "SELECT file FROM inputs UNION ALL SELECT file FROM previews "
                "UNION ALL SELECT result_file FROM runs WHERE result_file IS NOT NULL "
                "UNION ALL SELECT thumb_file FROM runs WHERE thumb_file IS NOT NULL")}
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


def _relative_to(path: Path, folder: Path) -> str | None:
    try:
        return path.resolve().relative_to(folder).as_posix()
    except ValueError:
        return None


def _limit(limit: Any) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
        raise GalleryError(f"limit must be a whole number from 1 to 10000, not {limit!r}.")
    return limit


def _floats(values: dict[str, Any] | None) -> dict[str, float]:
    return {str(k): float(v) for k, v in (values or {}).items()}


def _duration(result: Any, row: dict[str, Any]) -> float:
    total = (getattr(result, "timings", None) or {}).get("total")
    if total is not None:
        return float(total)
    started = datetime.fromisoformat(row["started"]) if row["started"] else datetime.now(timezone.utc)
    return (datetime.now(timezone.utc) - started).total_seconds()


def _result_info(result: Any, row: dict[str, Any]) -> pngmeta.ResultInfo:
    """The engine's account of a result plus what a gallery needs to import it again elsewhere."""
    return pngmeta.ResultInfo.of_result(
        result, row["params_json"], content_name=row["content_name"],
        style_names=tuple(json.loads(row["style_names"])), created=row["created"], title=row["title"],
        tags=row["tags"])
