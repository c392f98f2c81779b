"""Opening gallery.db: refuse files that are not ours, then bring the schema up to date.

The schema version lives in PRAGMA user_version and the file is marked as ours with PRAGMA
application_id, both set in the same transaction that creates the tables, so a file is either
empty, ours, or someone else's. Migrations are append-only: MIGRATIONS[n] takes version n to n+1.
"""
from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from sqlite_utils import Database

from gallery.errors import GalleryError

DB_NAME = "gallery.db"
APPLICATION_ID = 0x4E535453  # "NSTS": neural style transfer studio
BUSY_TIMEOUT_MS = 30_000
STATUSES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
# A job waiting or in progress; every other status is an end.
ACTIVE = ("queued", "running")
FTS_COLUMNS = ("title", "tags", "content_name", "style_names")

_LEAVE_IT = ("It has been left untouched: move it away (or point STUDIO_DATA / --data at another "
             "folder) to start a new gallery")


def _create_v1(db: Database) -> None:
    statuses = ", ".join(f"'{s}'" for s in STATUSES)
    db.executescript(f"""
        CREATE TABLE inputs (
            sha256 TEXT PRIMARY KEY,
            name TEXT NOT NULL,             -- the upload's name, cleaned; for display only
            file TEXT NOT NULL,             -- relative to the data folder, named by sha256
            format TEXT NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            file_size INTEGER NOT NULL,
            used_as_content INTEGER NOT NULL DEFAULT 0,
            used_as_style INTEGER NOT NULL DEFAULT 0,
            created TEXT NOT NULL,
            last_used TEXT NOT NULL
        );
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: files live under runs/<id>/
            status TEXT NOT NULL CHECK (status IN ({statuses})),
            owner TEXT NOT NULL DEFAULT '',
            batch TEXT,
            title TEXT NOT NULL DEFAULT '',
            tags TEXT NOT NULL DEFAULT '',       -- comma-separated
            content_name TEXT NOT NULL,
            content_sha256 TEXT REFERENCES inputs(sha256),
            style_names TEXT NOT NULL,           -- JSON array, in blend order
            size INTEGER NOT NULL,
            iterations INTEGER NOT NULL,
            optimizer TEXT NOT NULL,
            style_weight REAL NOT NULL,
            content_weight REAL NOT NULL,
            tv_weight REAL NOT NULL,
            seed INTEGER NOT NULL,
            device TEXT NOT NULL,                -- as asked while queued; as used once run (v1; see v2)
            params_json TEXT NOT NULL,           -- engine.params.Params; image paths relative
            created TEXT NOT NULL,               -- ISO 8601, UTC
            started TEXT,
            finished TEXT,
            duration REAL,                       -- seconds
            favorite INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            iteration INTEGER NOT NULL DEFAULT 0,
            total INTEGER NOT NULL DEFAULT 0,
            losses_json TEXT NOT NULL DEFAULT '{{}}',
            timings_json TEXT NOT NULL DEFAULT '{{}}',
            cancel_requested INTEGER NOT NULL DEFAULT 0,
            worker TEXT,
            worker_host TEXT,
            worker_pid INTEGER,
            worker_started INTEGER,              -- process start time (clock ticks), tells pid reuse apart
            worker_token TEXT,
            heartbeat TEXT,                      -- last sign of life of a running job
            weights_name TEXT,
            weights_sha256 TEXT,
            result_file TEXT,                    -- relative to the data folder
            result_sha256 TEXT,
            thumb_file TEXT,
            preview_file TEXT,                   -- the latest intermediate image
            requeued_from INTEGER
        );
        CREATE TABLE run_styles (
            run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            sha256 TEXT REFERENCES inputs(sha256),
            name TEXT NOT NULL,
            PRIMARY KEY (run_id, position)
        );
        CREATE TABLE previews (
            run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            iteration INTEGER NOT NULL,
            file TEXT NOT NULL,
            PRIMARY KEY (run_id, iteration)
        );
    """)
    for column in ("status", "owner", "batch", "title", "tags", "content_name", "content_sha256", "size",
                   "iterations", "optimizer", "style_weight", "seed", "device", "created", "duration",
                   "favorite", "result_sha256"):
        db.table("runs").create_index([column])
    db.table("inputs").create_index(["last_used"])
    db.table("run_styles").create_index(["name"])
    db.table("run_styles").create_index(["sha256"])
    db.table("runs").enable_fts(list(FTS_COLUMNS), create_triggers=True)


def _split_device_v2(db: Database) -> None:
    """`device` said "asked for" while queued and "used, plus how the loss was evaluated" once
    done ("cpu (channels_last+bf16)"). From v2 it always says what was asked for (as in
    params_json); device_used and evaluation say where and how a run ran. worker_token, written
    and never read, goes."""
    for statement in (
        "ALTER TABLE runs ADD COLUMN device_used TEXT",
        "ALTER TABLE runs ADD COLUMN evaluation TEXT NOT NULL DEFAULT ''",
        """UPDATE runs SET
            device_used = CASE WHEN instr(device, ' (') THEN substr(device, 1, instr(device, ' (') - 1)
                               ELSE device END,
            evaluation = CASE WHEN instr(device, ' (') AND device LIKE '%)'
                              THEN substr(device, instr(device, ' (') + 2, length(device) - instr(device, ' (') - 2)
                              ELSE '' END,
            device = coalesce(json_extract(params_json, '$.device'), device)
        WHERE status = 'done'""",
        "ALTER TABLE runs DROP COLUMN worker_token",
    ):
        db.execute(statement)


def _clips_v3(db: Database) -> None:
    """Clips (animated GIF/WebP, videos) as content: an input's frame count and length; a run's
    frame in progress and frame count (1: a still), its finished frames (kept as they finish,
    so an interrupted run continues after them) and its animation, WebP and GIF."""
    db.executescript("""
        ALTER TABLE inputs ADD COLUMN frames INTEGER NOT NULL DEFAULT 1;
        ALTER TABLE inputs ADD COLUMN duration_ms INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE runs ADD COLUMN frames INTEGER NOT NULL DEFAULT 1;
        ALTER TABLE runs ADD COLUMN frame INTEGER NOT NULL DEFAULT 0;   -- 1-based, while running a clip
        ALTER TABLE runs ADD COLUMN animation_file TEXT;                -- animated WebP
        ALTER TABLE runs ADD COLUMN gif_file TEXT;
        CREATE TABLE frames (
            run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,                                  -- 0-based
            file TEXT NOT NULL,
            PRIMARY KEY (run_id, position)
        );
    """)


def _prints_v4(db: Database) -> None:
    """Prints: the run a print grew from (its result the print's starting image; the link goes
    when that run is deleted), and a tiled run's progress within an iteration, tile of tiles."""
    db.executescript("""
        ALTER TABLE runs ADD COLUMN grown_from INTEGER REFERENCES runs(id) ON DELETE SET NULL;
        ALTER TABLE runs ADD COLUMN tile INTEGER NOT NULL DEFAULT 0;    -- tiles done in the iteration after `iteration`
        ALTER TABLE runs ADD COLUMN tiles INTEGER NOT NULL DEFAULT 0;   -- 0: the whole image at once
    """)
    db.table("runs").create_index(["grown_from"])


MIGRATIONS: list[Callable[[Database], None]] = [_create_v1, _split_device_v2, _clips_v3, _prints_v4]


@contextmanager
def write_transaction(db: Database) -> Iterator[None]:
    """BEGIN IMMEDIATE takes the write lock up front, so two writers never both read a row and
    then race to update it; the busy timeout makes the other one wait."""
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if db.conn.in_transaction:
            db.conn.execute("ROLLBACK")
        raise
    db.conn.execute("COMMIT")


def _is_busy(error: sqlite3.Error) -> bool:
    return (getattr(error, "sqlite_errorcode", 0) & 0xFF) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def open_db(path: Path) -> Database:
    """The gallery database at `path`, created or migrated as needed; GalleryError for a file
    that is damaged, not a gallery, or from a newer release. Such files are never written."""
    # SQLite skips the busy handler where waiting could deadlock (two connections creating the
    # file and switching it to WAL at once, say): such a clash is retried here instead.
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            return _open(path)
        except sqlite3.OperationalError as e:
            if not _is_busy(e) or time.monotonic() > deadline:
                raise GalleryError(f"Cannot open the gallery database {path}: {e}.") from e
            time.sleep(0.05)


def _open(path: Path) -> Database:
    if path.exists() and path.stat().st_size > 0:
        _check_ours(path)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        # With WAL, NORMAL loses at most the last commits on power loss and never corrupts; files
        # are fsynced before the rows naming them commit, so what survives is still consistent.
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        db = Database(conn)
        _migrate(db, path)
    except sqlite3.DatabaseError as e:
        conn.close()
        if isinstance(e, sqlite3.OperationalError) and _is_busy(e):
            raise
        raise GalleryError(f"Cannot open the gallery database {path}: {e}.") from e
    except BaseException:
        conn.close()
        raise
    return db


def _check_ours(path: Path) -> None:
    # Read-only, so nothing is written to a file that turns out not to be ours (a read-write
    # connection would, for one, roll back another program's hot journal).
    uri = f"file:{quote(str(path))}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
    except sqlite3.Error as e:
        raise GalleryError(f"Cannot read the gallery database {path}: {e}.") from e
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        n_objects = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        problems = [row[0] for row in conn.execute("PRAGMA quick_check(3)")]
    except sqlite3.DatabaseError as e:
        if isinstance(e, sqlite3.OperationalError) and _is_busy(e):
            raise  # someone else's lock, not damage: open_db tries again
        raise GalleryError(f"{path} is not a gallery database, or it is damaged ({e}). {_LEAVE_IT}.") from e
    finally:
        conn.close()
    if app_id != APPLICATION_ID and (app_id != 0 or n_objects):
        raise GalleryError(f"{path} is an SQLite database of some other program, not a gallery. {_LEAVE_IT}.")
    if problems != ["ok"]:
        raise GalleryError(f"{path} is damaged ({'; '.join(problems)}). {_LEAVE_IT}, "
                           "or restore it from a backup.")
    if version > len(MIGRATIONS):
        raise GalleryError(f"{path} was written by a newer release of the studio (schema version {version}; "
                           f"this one knows up to {len(MIGRATIONS)}). Upgrade the studio to open it.")


def _migrate(db: Database, path: Path) -> None:
    if db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS):
        return
    with write_transaction(db):
        # Read again under the write lock: another process may have migrated meanwhile.
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise GalleryError(f"{path} was written by a newer release of the studio (schema version "
                               f"{version}). Upgrade the studio to open it.")
        if version == 0 and db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise GalleryError(f"{path} is an SQLite database of some other program, not a gallery. {_LEAVE_IT}.")
        for migrate in MIGRATIONS[version:]:
            migrate(db)
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
