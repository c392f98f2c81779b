"""The job queue's state changes: submit, claim, progress, and each way a run ends
(done, failed, cancelled, interrupted), plus requeue. Every change is one write transaction,
and a file is renamed into place in the transaction that commits the row naming it."""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PIL import Image

from engine import masks, pngmeta
from engine.clips import Clip, gif_bytes, read_clip, webp_bytes
from engine.params import Params, ParamsError, validate
from gallery import files, procs
from gallery.core import floats
from gallery.errors import GalleryError
from gallery.inputs import VIDEO_FORMATS, Inputs
from gallery.models import Run, absolute_params
from gallery.names import MAX_TITLE, clean_tags, clean_text
from gallery.paths import as_run_id, input_sha256, relative_to
from gallery.times import now_iso, to_utc

# A running job of another host cannot be checked by pid; without a sign of life for this long
# it is taken for dead.
FOREIGN_STALE_S = 15 * 60
MAX_ERROR = 2000
# What an imported run may set beside its labels (add_done_run).
_DONE_COLUMNS = {"created", "finished", "duration", "favorite", "losses_json", "timings_json", "device_used",
                 "evaluation", "weights_name", "weights_sha256", "frames"}


class Queue(Inputs):
    def submit(self, params: Params, owner: str = "", batch: str | None = None,
               title: str = "", tags: str = "", grown_from: int | None = None) -> int:
        """Queues a run; returns its id. Raises ParamsError (also for unreadable images).
        `grown_from`: the run whose result this one starts from (a print; Gallery.prints_of)."""
        validate(params)
        content = self._ingest(params.content, "content", "content")
        styles = [self._ingest(s, "styles", "style") for s in params.styles]
        videos = [s.name for s in styles if s.format in VIDEO_FORMATS]
        if videos:
            raise ParamsError({"styles": f"{videos[0]} is a video; a style is a still image"})
        mask_entries = [m if masks.is_everywhere(m) else self._relative_mask(m) for m in params.style_masks]
        init = self._ingest(params.init_image, "init_image", None) if params.init_image else None
        stored = params.with_changes(content=relative_to(content.path, self.data_dir),
                                     styles=tuple(relative_to(s.path, self.data_dir) for s in styles),
                                     style_masks=tuple(mask_entries),
                                     init_image=relative_to(init.path, self.data_dir) if init else "")
        with self._write():
            if grown_from is not None:
                self._status(grown_from)  # NotFound for a run that is not (or no longer) here
            now = now_iso()
            self._touch_input(content.sha256, (1, 0), now)
            for style in styles:
                self._touch_input(style.sha256, (0, 1), now)
            return self._insert_run(
                stored, content_name=content.name, content_sha256=content.sha256,
                styles=[(s.sha256, s.name) for s in styles], owner=owner, batch=batch, title=title, tags=tags,
                frames=content.frames, grown_from=None if grown_from is None else as_run_id(grown_from))

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
        run_id = cursor.lastrowid
        assert run_id is not None, "an INSERT gives its row's id"
        self.db.conn.executemany("INSERT INTO run_styles (run_id, position, sha256, name) VALUES (?,?,?,?)",
                                 [(run_id, i, sha, name) for i, (sha, name) in enumerate(styles)])
        return run_id

    def add_done_run(self, params: Params, png: bytes, thumb: bytes, *, content_name: str,
                     content_sha256: str | None, styles: list[tuple[str | None, str]], owner: str = "",
                     batch: str | None = None, title: str = "", tags: str = "",
                     animation: tuple[bytes, bytes] | None = None, **columns: Any) -> int:
        """A finished run made elsewhere (an import): its row and its result and thumbnail files
        (a clip's: its `animation`, WebP and GIF, too), in one transaction. `params` name images
        relative to the data folder; `columns` may set what a finished run records (created,
        finished, duration, favorite, losses_json, frames, ...)."""
        unknown = set(columns) - _DONE_COLUMNS
        if unknown:
            raise TypeError(f"add_done_run() cannot set {', '.join(sorted(unknown))}")
        staged = files.StagedFiles()
        try:
            with self._write():
                run_id = self._insert_run(
                    params, content_name=content_name, content_sha256=content_sha256, styles=styles, owner=owner,
                    batch=batch, title=title, tags=tags, status="done", iteration=params.total_iterations(),
                    result_sha256=hashlib.sha256(png).hexdigest(), **columns)
                result_path, result_rel = self._run_file(run_id, "result.png")
                thumb_path, thumb_rel = self._run_file(run_id, "thumb.webp")
                staged.add(result_path, png)
                staged.add(thumb_path, thumb)
                animation_rel, gif_rel = self._stage_animation(run_id, animation, staged)
                frames = self._stage_animation_frames(run_id, animation[0], staged) if animation else []
                staged.place()
                self.db.execute("UPDATE runs SET result_file = ?, thumb_file = ?, animation_file = ?, gif_file = ? "
                                "WHERE id = ?", [result_rel, thumb_rel, animation_rel, gif_rel, run_id])
                self.db.conn.executemany("INSERT INTO frames (run_id, position, file) VALUES (?,?,?)", frames)
        except BaseException:
            staged.discard()
            raise
        return run_id

    def claim_next(self, worker: str = "", devices: Iterable[str] | None = None) -> Run | None:
        """Atomically takes the oldest queued run (optionally only those asking for one of
        `devices`) and marks it running by this process; None when there is none."""
        where, args = "status = 'queued'", []
        if devices is not None:
            devices = list(devices)
            where += f" AND device IN ({', '.join('?' * len(devices))})"
            args = devices
        return self._claim(f"SELECT id FROM runs WHERE {where} ORDER BY id LIMIT 1", args, worker)

    def claim(self, run_id: int, worker: str = "") -> Run | None:
        """Takes queued run `run_id` (as claim_next does); None if it is no longer queued."""
        return self._claim("SELECT id FROM runs WHERE id = ? AND status = 'queued'", [as_run_id(run_id)], worker)

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

    def _stage_animation(self, run_id: int, animation: tuple[bytes, bytes] | None,
                         staged: files.StagedFiles) -> tuple[str | None, str | None]:
        """A clip run's (WebP, GIF) staged among its files; their relative paths (None, None
        for a still)."""
        if animation is None:
            return None, None
        relatives = []
        for data, name in zip(animation, ("animation.webp", "animation.gif")):
            path, relative = self._run_file(run_id, name)
            staged.add(path, data)
            relatives.append(relative)
        return relatives[0], relatives[1]

    def _frame_file(self, run_id: int, position: int) -> tuple[Path, str]:
        return self._run_file(run_id, f"frame-{int(position):04d}.png")

    def _stage_animation_frames(self, run_id: int, webp: bytes, staged: files.StagedFiles) -> list[tuple[int, int, str]]:
        """A finished clip's frames, one at a time for the detail view, decoded from its WebP
        when nothing else has them (an import: the zip carries the animation only); the
        frames table's rows for them."""
        rows = []
        for position, frame in enumerate(read_clip(webp).frames):
            path, relative = self._frame_file(run_id, position)
            staged.add(path, files.lossless_png(frame))
            rows.append((run_id, position, relative))
        return rows

    def record_worker(self, run_id: int, worker: str) -> None:
        """Says where a running job runs once its worker knows (a cluster's node, for one)."""
        with self._write():
            self.db.execute("UPDATE runs SET worker = ? WHERE id = ? AND status = 'running'",
                            [clean_text(worker, 200), as_run_id(run_id)])

    def record_progress(self, run_id: int, iteration: int, total: int, losses: dict[str, float],
                        previews: Iterable[tuple[int, Image.Image]] = (), frame: int = 0,
                        tile: int = 0, tiles: int = 0) -> bool:
        """Records how far a running job is, with any new intermediate images; returns whether
        the run was still running. A clip's `frame` is the one in progress (1-based), and
        `iteration` of `total` count within it; a tiled run's `tile` of `tiles` are done in the
        iteration after `iteration` (engine.transfer.Progress). How often to call it is the
        caller's policy (the worker throttles: worker/progress.py)."""
        run_id = as_run_id(run_id)
        staged = files.StagedFiles()
        try:
            stored = self._stage_previews(run_id, list(previews), staged)
            with self._write():
                changed = self.db.execute(
                    "UPDATE runs SET iteration = ?, total = ?, frame = ?, tile = ?, tiles = ?, losses_json = ?, "
                    "heartbeat = ? WHERE id = ? AND status = 'running'",
                    [int(iteration), int(total), int(frame), int(tile), int(tiles), json.dumps(floats(losses)),
                     now_iso(), run_id]).rowcount
                if changed and stored:
                    self._record_previews(run_id, stored, staged)
                else:
                    staged.discard()
        except BaseException:
            staged.discard()
            raise
        return bool(changed)

    def _stage_previews(self, run_id: int, previews: list[tuple[int, Image.Image]],
                        staged: files.StagedFiles) -> list[tuple[int, str]]:
        have = {row["iteration"] for row in self._rows("SELECT iteration FROM previews WHERE run_id = ?", [run_id])}
        stored = []
        for iteration, image in previews:
            if iteration in have:
                continue
            path, relative = self._run_file(run_id, f"preview-{int(iteration):06d}.jpg")
            staged.add(path, files.preview_bytes(image))
            stored.append((int(iteration), relative))
            have.add(iteration)
        return stored

    def _record_previews(self, run_id: int, stored: list[tuple[int, str]], staged: files.StagedFiles) -> None:
        staged.place()
        self.db.conn.executemany("INSERT INTO previews (run_id, iteration, file) VALUES (?,?,?)",
                                 [(run_id, it, rel) for it, rel in stored])
        self.db.execute("UPDATE runs SET preview_file = (SELECT file FROM previews WHERE run_id = ? "
                        "ORDER BY iteration DESC LIMIT 1) WHERE id = ?", [run_id, run_id])

    def record_frame(self, run_id: int, position: int, image: Image.Image) -> bool:
        """Keeps a running clip's finished frame (`position` from 0), on disk before the row
        naming it commits, so an interrupted run continues after it; whether it was kept."""
        run_id = as_run_id(run_id)
        path, relative = self._frame_file(run_id, position)
        staged = files.StagedFiles()
        try:
            staged.add(path, files.lossless_png(image))
            with self._write():
                if self._status(run_id) != "running":
                    staged.discard()
                    return False
                staged.place()
                self.db.execute("INSERT OR REPLACE INTO frames (run_id, position, file) VALUES (?,?,?)",
                                [run_id, int(position), relative])
        except BaseException:
            staged.discard()
            raise
        return True

    def frames(self, run_id: int) -> list[Path]:
        """A clip run's finished frames in order, as far as they run without a gap."""
        run_id = as_run_id(run_id)
        found: list[Path] = []
        for row in self._rows("SELECT position, file FROM frames WHERE run_id = ? ORDER BY position", [run_id]):
            if row["position"] != len(found):
                break
            found.append(self._path(row["file"]))
        return found

    def resume_frames(self, run_id: int) -> list[Path]:
        """The frames a clip run can continue after: its own, or, when it has none and was
        queued again, those of the run it was queued from (same params), copied into this one
        so it keeps them when that run is deleted."""
        run_id = as_run_id(run_id)
        source, found = run_id, self.frames(run_id)
        while not found:  # back along the requeues (one that never ran has none of its own)
            row = self._row("SELECT requeued_from FROM runs WHERE id = ?", [source])
            if row is None or row["requeued_from"] is None:
                return []
            source = row["requeued_from"]
            found = self.frames(source)
        if source != run_id:
            for position, path in enumerate(found):
                with Image.open(path) as image:
                    if not self.record_frame(run_id, position, image):
                        break
        return self.frames(run_id)

    def finish(self, run_id: int, result: Any, clip: Clip | None = None) -> None:
        """Saves an engine.transfer.Result (a clip's: its first frame, with the styled `clip`
        kept as an animated WebP and GIF): files renamed into place, then the row says done.
        Raises GalleryError if the run is not running (then nothing is kept)."""
        run_id = as_run_id(run_id)
        row = self._run_row(run_id)
        png = pngmeta.result_png(result.image, _result_info(result, row))
        staged = files.StagedFiles()
        try:
            result_path, result_rel = self._run_file(run_id, "result.png")
            thumb_path, thumb_rel = self._run_file(run_id, "thumb.webp")
            staged.add(result_path, png)
            staged.add(thumb_path, files.thumbnail_bytes(result.image))
            animation = (webp_bytes(clip), gif_bytes(clip)) if clip is not None else None
            animation_rel, gif_rel = self._stage_animation(run_id, animation, staged)
            previews = self._stage_previews(run_id, list(result.previews or []), staged)
            with self._write():
                status = self._status(run_id)
                if status != "running":
                    raise GalleryError(f"Run {run_id} is {status}, not running; its result was not saved.")
                if previews:
                    self._record_previews(run_id, previews, staged)
                staged.place()
                self.db.execute(
                    "UPDATE runs SET status = 'done', finished = ?, duration = ?, error = NULL, "
                    "iteration = total, losses_json = ?, timings_json = ?, device_used = ?, evaluation = ?, "
                    "weights_name = ?, weights_sha256 = ?, result_file = ?, result_sha256 = ?, thumb_file = ?, "
                    "animation_file = ?, gif_file = ?, frame = 0, tile = 0, cancel_requested = 0 WHERE id = ?",
                    [now_iso(), _duration(result, row), json.dumps(floats(result.losses)),
                     json.dumps(floats(result.timings)), str(result.device), getattr(result, "evaluation", ""),
                     result.weights_name, result.weights_sha256, result_rel, hashlib.sha256(png).hexdigest(),
                     thumb_rel, animation_rel, gif_rel, run_id])
        except BaseException:
            staged.discard()
            raise

    def _end(self, run_id: int, status: str, error: str | None, from_statuses: tuple[str, ...]) -> bool:
        run_id = as_run_id(run_id)
        with self._write():
            self._status(run_id)  # NotFound for an unknown id
            changed = self.db.execute(
                f"UPDATE runs SET status = ?, error = ?, finished = ?, cancel_requested = 0 "
                f"WHERE id = ? AND status IN ({', '.join('?' * len(from_statuses))})",
                [status, error and error[:MAX_ERROR], now_iso(), run_id, *from_statuses]).rowcount
        return bool(changed)

    def fail(self, run_id: int, message: str) -> bool:
        """A queued or running run becomes failed with `message`; returns whether it changed."""
        return self._end(run_id, "failed", str(message) or "failed", ("running", "queued"))

    def mark_cancelled(self, run_id: int) -> bool:
        return self._end(run_id, "cancelled", None, ("running", "queued"))

    def mark_interrupted(self, run_id: int, message: str) -> bool:
        """A running run whose worker stopped before it finished."""
        return self._end(run_id, "interrupted", message, ("running",))

    def request_cancel(self, run_id: int) -> str:
        """Asks for a run to stop: a queued run is cancelled at once, a running one flagged (its
        worker checks every iteration). Returns the run's status afterwards."""
        run_id = as_run_id(run_id)
        with self._write():
            status = self._status(run_id)
            if status == "queued":
                self.db.execute("UPDATE runs SET status = 'cancelled', finished = ? WHERE id = ?", [now_iso(), run_id])
                return "cancelled"
            if status == "running":
                self.db.execute("UPDATE runs SET cancel_requested = 1 WHERE id = ?", [run_id])
            return status

    def cancel_requested(self, run_id: int) -> bool:
        row = self._row("SELECT cancel_requested, status FROM runs WHERE id = ?", [as_run_id(run_id)])
        return row is None or bool(row["cancel_requested"]) or row["status"] != "running"

    def recover_interrupted(self) -> list[int]:
        """Running rows whose worker process is gone become interrupted; returns their ids.
        Workers on this host are checked by pid (and start time); those of other hosts by how
        long ago they were last heard of (FOREIGN_STALE_S)."""
        stale_before = datetime.fromtimestamp(time.time() - FOREIGN_STALE_S, UTC)
        dead = []
        for row in self._rows("SELECT id, worker_host, worker_pid, worker_started, heartbeat "
                              "FROM runs WHERE status = 'running'"):
            if row["worker_host"] == procs.HOST:
                if not procs.pid_alive(row["worker_pid"] or 0, row["worker_started"]):
                    dead.append((row["id"], f"process {row['worker_pid']} is gone"))
            elif (heartbeat := to_utc(row["heartbeat"])) is None or heartbeat < stale_before:
                dead.append((row["id"], f"no sign of life from host {row['worker_host']} since {row['heartbeat']}"))
        return [run_id for run_id, why in dead
                if self.mark_interrupted(run_id, f"The worker stopped before the run finished ({why}).")]

    def requeue(self, run_id: int) -> int:
        """Queues a new run with the same params, title and tags as an interrupted, failed or
        cancelled one (which stays, for the record); returns the new id."""
        run_id = as_run_id(run_id)
        with self._write():
            row = self._run_row(run_id)
            if row["status"] not in ("interrupted", "failed", "cancelled"):
                raise GalleryError(f"Run {run_id} is {row['status']}; only interrupted, failed or cancelled runs "
                                   "can be queued again.")
            styles = self._styles([run_id])[run_id]
            params = absolute_params(row["params_json"], self.data_dir)
            mask_shas = [input_sha256(m) or "" for m in params.style_masks if not masks.is_everywhere(m)]
            init_shas = [input_sha256(params.init_image) or ""] if params.init_image else []
            missing = [sha for sha in [row["content_sha256"], *(s for s, _ in styles), *mask_shas, *init_shas]
                       if not sha or self.get_input_or_none(sha) is None]
            if missing:
                raise GalleryError(f"Run {run_id}'s input images are not in this gallery, so it cannot run again.")
            return self._insert_run(
                Params.from_json(row["params_json"]), content_name=row["content_name"],
                content_sha256=row["content_sha256"], styles=styles, owner=row["owner"], batch=row["batch"],
                title=row["title"], tags=row["tags"], requeued_from=run_id, frames=row["frames"],
                grown_from=row["grown_from"])


def _duration(result: Any, row: dict[str, Any]) -> float:
    total = (getattr(result, "timings", None) or {}).get("total")
    if total is not None:
        return float(total)
    started = to_utc(row["started"]) or datetime.now(UTC)
    return (datetime.now(UTC) - started).total_seconds()


def _result_info(result: Any, row: dict[str, Any]) -> pngmeta.ResultInfo:
    """The engine's account of a result plus what a gallery needs to import it again elsewhere."""
    return pngmeta.ResultInfo.of_result(
        result, row["params_json"], content_name=row["content_name"],
        style_names=tuple(json.loads(row["style_names"])), created=row["created"], title=row["title"],
        tags=row["tags"])
