"""The gallery's storage and queue, on real SQLite files in temporary folders (no engine)."""
from __future__ import annotations

import io
import json
import os
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image

from engine import pngmeta
from engine.images import ImageError
from engine.params import ParamsError
from gallery import Gallery, GalleryError, NotFound, RunFilter
from gallery import db as gallery_db
from gallery.names import display_name
from harness.paths import CONTENT, STYLE, STYLE2
from support.runs import dead_pid, fake_result, files_under, finished_run, named_files, tiny_params

STYLE3 = STYLE.parent / "picasso_selfport1907.jpg"


# ---- opening ----------------------------------------------------------------------------------

def test_new_gallery_is_plain_sqlite_in_wal_mode(data_dir: Path) -> None:
    with Gallery(data_dir) as g:
        rid = finished_run(g, title="Evening", tags="warm, blue")
    conn = sqlite3.connect(data_dir / "gallery.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    row = conn.execute("SELECT status, title, tags, content_name, style_names, size, params_json, result_file "
                       "FROM runs WHERE id = ?", [rid]).fetchone()
    assert row[:6] == ("done", "Evening", "warm, blue", "tubingen.jpg", '["starry_night.jpg"]', 32)
    assert json.loads(row[6])["content"].startswith("inputs/")  # JSON as text, paths inside the folder
    assert row[7] == f"runs/{rid}/result.png"
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 0
    with Gallery(data_dir) as g:
        assert g.db.execute("PRAGMA busy_timeout").fetchone()[0] == gallery_db.BUSY_TIMEOUT_MS


def test_data_folder_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUDIO_DATA", str(tmp_path / "elsewhere"))
    with Gallery() as g:
        assert g.data_dir == (tmp_path / "elsewhere").resolve()
    assert (tmp_path / "elsewhere" / "gallery.db").is_file()


@pytest.mark.parametrize("content", [
    b"\x00\x01garbage" * 500,
    b"SQLite format 3\x00" + os.urandom(4000),
    b"",  # replaced below by a foreign SQLite database
])
def test_foreign_or_corrupt_db_is_refused_and_untouched(data_dir: Path, content: bytes) -> None:
    path = data_dir / "gallery.db"
    if content:
        path.write_bytes(content)
    else:
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL)")
        conn.execute("INSERT INTO invoices (amount) VALUES (9.5)")
        conn.commit()
        conn.close()
    before = path.read_bytes()
    with pytest.raises(GalleryError) as err:
        Gallery(data_dir)
    message = str(err.value)
    assert "gallery.db" in message and "untouched" in message and "move it away" in message
    assert path.read_bytes() == before
    with pytest.raises(GalleryError):  # and again: still refused, still the same
        Gallery(data_dir)
    assert path.read_bytes() == before


def test_damaged_gallery_is_refused_and_untouched(data_dir: Path) -> None:
    with Gallery(data_dir) as g:
        for _ in range(5):
            finished_run(g, title="x" * 150)
        g.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    path = data_dir / "gallery.db"
    data = bytearray(path.read_bytes())
    page_size = 4096
    data[2 * page_size: 3 * page_size] = os.urandom(page_size)  # a table page turned to noise
    path.write_bytes(bytes(data))
    with pytest.raises(GalleryError) as err:
        Gallery(data_dir)
    assert "damaged" in str(err.value) or "not a gallery" in str(err.value)
    assert path.read_bytes() == bytes(data)


def test_newer_schema_is_refused(data_dir: Path) -> None:
    Gallery(data_dir).close()
    conn = sqlite3.connect(data_dir / "gallery.db")
    conn.execute(f"PRAGMA user_version = {len(gallery_db.MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(GalleryError, match="newer release"):
        Gallery(data_dir)


def test_old_gallery_is_migrated(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Gallery(data_dir) as g:
        rid = finished_run(g, title="kept")

    def add_rating(db) -> None:
        db.execute("ALTER TABLE runs ADD COLUMN rating INTEGER")

    monkeypatch.setattr(gallery_db, "MIGRATIONS", [*gallery_db.MIGRATIONS, add_rating])
    with Gallery(data_dir) as g:
        assert g.db.execute("PRAGMA user_version").fetchone()[0] == len(gallery_db.MIGRATIONS)
        assert "rating" in g.db["runs"].columns_dict
        assert g.get(rid).title == "kept"


def test_data_folder_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("not a folder")
    with pytest.raises(GalleryError, match="is a file"):
        Gallery(tmp_path / "data")


# ---- input images -----------------------------------------------------------------------------

def test_inputs_are_stored_once_by_hash(data_dir: Path) -> None:
    with Gallery(data_dir) as g:
        a = g.add_input(CONTENT.read_bytes(), "photo.jpg", kind="content")
        b = g.add_input(CONTENT.read_bytes(), "again.jpg", kind="style")
        assert a.sha256 == b.sha256 and b.name == "photo.jpg"
        assert a.path == data_dir / "inputs" / f"{a.sha256}.jpg" and a.path.read_bytes() == CONTENT.read_bytes()
        assert (a.width, a.height) == (1024, 768)
        assert g.input_path(a.sha256) == a.path
        g.add_input(STYLE.read_bytes(), "starry.jpg", kind="style")
        assert [i.name for i in g.list_inputs()] == ["starry.jpg", "photo.jpg"]
        assert [i.name for i in g.list_inputs(kind="content")] == ["photo.jpg"]
        assert len(g.list_inputs(kind="style")) == 2
        assert files_under(data_dir / "inputs") == {a.path.name, f"{g.list_inputs()[0].sha256}.jpg"}


@pytest.mark.parametrize("name, shown", [
    ("../../../etc/passwd", "passwd"),
    ("C:\\Users\\me\\..\\cat.jpg", "cat.jpg"),
    ("invoice\u202egpj.exe", "invoicegpj.exe"),
    ("\u2066evil\u2069\x00\x07\n.jpg", "evil .jpg"),
    ("..", "image"),
    ("", "image"),
    ("a" * 500 + ".jpeg", "a" * 95 + ".jpeg"),
])
def test_hostile_upload_names_are_only_display_strings(data_dir: Path, name: str, shown: str) -> None:
    with Gallery(data_dir) as g:
        found = g.add_input(CONTENT.read_bytes(), name)
    assert found.name == shown == display_name(name)
    assert len(found.name) <= 100
    assert found.path.parent == data_dir / "inputs" and found.path.name == f"{found.sha256}.jpg"
    outside = {p.name for p in data_dir.parent.iterdir()}
    assert outside == {"data"}


def test_bad_upload_raises_image_error_and_stores_nothing(data_dir: Path) -> None:
    with Gallery(data_dir) as g:
        with pytest.raises(ImageError):
            g.add_input(b"<html>not an image</html>", "x.jpg")
        with pytest.raises(ImageError):
            g.add_input(CONTENT.read_bytes()[:5000], "cut.jpg")
        assert g.list_inputs() == []
    assert files_under(data_dir / "inputs") == set() if (data_dir / "inputs").exists() else True


def test_bad_ids_are_refused(data_dir: Path) -> None:
    with Gallery(data_dir) as g:
        for bad in ("../1", "1; DROP TABLE runs", -1, 0, True, 1.5, "", None):
            with pytest.raises(GalleryError):
                g.get(bad)
        with pytest.raises(NotFound):
            g.get(12345)
        with pytest.raises(GalleryError):
            g.input_path("../../etc/passwd")


# ---- queue ------------------------------------------------------------------------------------

def test_submit_keeps_params_and_copies_outside_images(data_dir: Path) -> None:
    with Gallery(data_dir) as g:
        params = tiny_params(styles=(STYLE, STYLE2), style_blend=(0.7, 0.3), seed=7)
        rid = g.submit(params, owner="ana", batch="b1", title="Two styles", tags="test,  blend ,test")
        run = g.get(rid)
        assert run.status == "queued" and run.owner == "ana" and run.batch == "b1"
        assert run.tags == "test, blend" and run.title == "Two styles"
        assert run.style_names == ["starry_night.jpg", "the_scream.jpg"]
        assert Path(run.params.content).parent == data_dir / "inputs"
        assert run.params.with_changes(content=params.content, styles=params.styles) == params
        assert run.total == 2 and run.iteration == 0
        # Submitting the run's own params again (as "run again" does) reuses the stored inputs.
        again = g.get(g.submit(run.params))
        assert again.params == run.params and len(g.list_inputs()) == 3


def test_submit_refuses_bad_params(data_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 100)
    with Gallery(data_dir) as g:
        with pytest.raises(ParamsError) as err:
            g.submit(tiny_params(size=5))
        assert "size" in err.value.errors
        with pytest.raises(ParamsError) as err:
            g.submit(tiny_params(content=tmp_path / "missing.jpg"))
        assert "content" in err.value.errors
        with pytest.raises(ParamsError) as err:
            g.submit(tiny_params(styles=(tmp_path / "broken.jpg",)))
        assert "styles" in err.value.errors
        assert g.count_runs() == 0


def test_claim_is_fifo_and_records_the_worker(data_dir: Path) -> None:
    with Gallery(data_dir) as g:
        ids = [g.submit(tiny_params(seed=i)) for i in range(3)]
        assert [g.queue_position(i) for i in ids] == [1, 2, 3]
        run = g.claim_next("cpu@here")
        assert run.id == ids[0] and run.status == "running" and run.worker == "cpu@here"
        row = g.db.execute("SELECT worker_pid, worker_host FROM runs WHERE id = ?", [run.id]).fetchone()
        assert row[0] == os.getpid() and row[1]
        assert g.queue_position(ids[0]) is None and g.queue_position(ids[2]) == 2
        assert g.claim(ids[0], "x") is None  # no longer queued
        assert g.claim(ids[2], "x").id == ids[2]
        assert g.claim_next("x").id == ids[1]
        assert g.claim_next("x") is None


def test_claim_filters_by_device(data_dir: Path) -> None:
    with Gallery(data_dir) as g:
        cuda = g.submit(tiny_params().with_changes(device="cuda"))
        auto = g.submit(tiny_params().with_changes(device="auto"))
        assert g.claim_next("cpu", devices=["cpu", "auto"]).id == auto
        assert g.claim_next("cpu", devices=["cpu", "auto"]) is None
        assert g.claim_next("gpu", devices=["cuda", "auto"]).id == cuda


def test_concurrent_claims_take_each_job_once(data_dir: Path) -> None:
    with Gallery(data_dir) as g:
        ids = {g.submit(tiny_params(seed=i)) for i in range(30)}
    claimed: list[int] = []

    def claimer() -> None:
        with Gallery(data_dir) as mine:
            while (run := mine.claim_next("t")) is not None:
                claimed.append(run.id)

    threads = [threading.Thread(target=claimer) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(ids)


def test_progress_of_a_running_run_is_recorded_with_its_previews(data_dir: Path) -> None:
    with Gallery(data_dir) as g:
        rid = g.submit(tiny_params())
        g.claim(rid, "t")
        assert g.record_progress(rid, 1, 10, {"total": 9.0}, [(1, Image.new("RGB", (32, 24), "red"))])
        assert g.record_progress(rid, 2, 10, {"total": 8.0})
        run = g.get(rid)
        assert (run.iteration, run.total, run.losses) == (2, 10, {"total": 8.0})
        assert [i for i, _ in g.previews(rid)] == [1]
        assert run.preview_path == g.previews(rid)[-1][1]
        assert Image.open(run.preview_path).format == "JPEG"
        g.mark_cancelled(rid)
        assert not g.record_progress(rid, 3, 10, {"total": 7.0}, [(3, Image.new("RGB", (32, 24)))])
        assert g.get(rid).iteration == 2 and [i for i, _ in g.previews(rid)] == [1]


def test_finish_places_files_then_marks_done(data_dir: Path) -> None:
    with Gallery(data_dir) as g:
        rid = g.submit(tiny_params(), title="Kept in the PNG")
        g.claim(rid, "t")
        g.record_progress(rid, 1, 2, {"total": 2.0}, [(1, Image.new("RGB", (32, 24)))])
        g.finish(rid, fake_result(previews=2))
        run = g.get(rid)
        assert run.status == "done" and run.iteration == run.total == 2
        assert run.duration == 0.3 and run.weights_name == "caffe" and run.device_used == "cpu"
        assert Image.open(run.result_path).size == (32, 24)
        assert Image.open(run.thumb_path).format == "WEBP"
        assert [i for i, _ in g.previews(rid)] == [1, 2]
        stored = g.db.execute("SELECT params_json FROM runs WHERE id = ?", [rid]).fetchone()[0]
        assert pngmeta.read_params_json(run.result_path) == stored
        meta = pngmeta.read_metadata(run.result_path)
        assert meta["studio:title"] == "Kept in the PNG" and meta["studio:content_name"] == "tubingen.jpg"
        assert g.export_png(rid) == run.result_path.read_bytes()
        with pytest.raises(GalleryError, match="not running"):
            g.finish(rid, fake_result())
    assert not [p for p in data_dir.rglob("*.tmp")]


def test_failed_write_leaves_no_file_and_no_done_row(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Gallery(data_dir) as g:
        rid = g.submit(tiny_params())
        g.claim(rid, "t")

        def disk_full(img):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr("gallery.files.thumbnail_bytes", disk_full)
        with pytest.raises(OSError):
            g.finish(rid, fake_result(previews=1))
        assert g.get(rid).status == "running"
        assert files_under(g.run_dir(rid)) == set() if g.run_dir(rid).exists() else True


def test_cancel_queued_and_running(data_dir: Path) -> None:
    with Gallery(data_dir) as g:
        running, queued = g.submit(tiny_params()), g.submit(tiny_params())
        g.claim(running, "t")
        assert not g.cancel_requested(running)
        assert g.request_cancel(queued) == "cancelled"
        assert g.get(queued).status == "cancelled"
        assert g.request_cancel(running) == "running"
        assert g.cancel_requested(running)
        assert g.mark_cancelled(running)
        assert g.get(running).status == "cancelled" and not g.get(running).cancel_requested
        assert g.request_cancel(running) == "cancelled"


def test_fail_requeue_and_delete(data_dir: Path) -> None:
    with Gallery(data_dir) as g:
        rid = g.submit(tiny_params(seed=3), title="again", tags="x")
        g.claim(rid, "t")
        assert g.fail(rid, "The image file is truncated or damaged.")
        failed = g.get(rid)
        assert failed.status == "failed" and failed.error.startswith("The image")
        new = g.requeue(rid)
        again = g.get(new)
        assert again.status == "queued" and again.requeued_from == rid
        assert (again.params, again.title, again.tags) == (failed.params, "again", "x")
        assert g.get(rid).status == "failed"  # the failure stays on record
        with pytest.raises(GalleryError, match="only interrupted, failed or cancelled"):
            g.requeue(new)
        g.claim(new, "t")
        with pytest.raises(GalleryError, match="cancel it first"):
            g.delete(new)
        g.finish(new, fake_result())
        folder = g.run_dir(new)
        g.delete(new)
        assert not folder.exists()
        with pytest.raises(NotFound):
            g.get(new)


def test_recover_interrupted(data_dir: Path) -> None:
    with Gallery(data_dir) as g:
        mine, dead, foreign_old, foreign_new = (g.submit(tiny_params(seed=i)) for i in range(4))
        for rid in (mine, dead, foreign_old, foreign_new):
            g.claim(rid, "t")
        old = (datetime.now(UTC) - timedelta(hours=2)).isoformat(timespec="milliseconds")
        g.db.execute("UPDATE runs SET worker_pid = ? WHERE id = ?", [dead_pid(), dead])
        g.db.execute("UPDATE runs SET worker_host = 'other-host', heartbeat = ? WHERE id = ?", [old, foreign_old])
        g.db.execute("UPDATE runs SET worker_host = 'other-host' WHERE id = ?", [foreign_new])
        assert sorted(g.recover_interrupted()) == sorted([dead, foreign_old])
        assert g.get(dead).status == "interrupted" and "stopped" in g.get(dead).error
        assert g.get(mine).status == g.get(foreign_new).status == "running"
        assert g.recover_interrupted() == []
        # pid reuse: a live pid that is not the process which claimed the job
        g.db.execute("UPDATE runs SET worker_started = worker_started + 1 WHERE id = ?", [mine])
        assert g.recover_interrupted() == [mine]


def test_sweep_removes_only_what_no_row_names(data_dir: Path) -> None:
    with Gallery(data_dir) as g:
        kept = finished_run(g)
        gone = finished_run(g)
        g.db.execute("DELETE FROM runs WHERE id = ?", [gone])  # as if a crash hit delete()
        pid = dead_pid()
        junk = [
            g.run_dir(kept) / f".result.png.{pid}.0123abcd.tmp",
            g.run_dir(kept) / "preview-000099.jpg",
            data_dir / "inputs" / ("f" * 64 + ".jpg"),
            data_dir / "inputs" / f".{'e' * 64}.jpg.{pid}.89abcdef.tmp",
        ]
        for path in junk:
            path.write_bytes(b"x")
        live_temp = g.run_dir(kept) / f".thumb.webp.{os.getpid()}.0123abcd.tmp"
        live_temp.write_bytes(b"being written")
        unrelated = data_dir / "notes.txt"
        unrelated.write_text("mine")
        removed = set(g.remove_orphans())
        assert set(junk) <= removed and g.run_dir(gone) in removed
        assert not g.run_dir(gone).exists()
        assert live_temp.exists() and unrelated.exists()
        live_temp.unlink()
        assert files_under(data_dir) - {"notes.txt"} <= named_files(g)
        assert g.get(kept).result_path.exists()


# ---- listing and search -----------------------------------------------------------------------

@pytest.fixture
def filled(data_dir: Path) -> Gallery:
    g = Gallery(data_dir)
    specs = [
        dict(params=tiny_params(styles=(STYLE,)), title="Starry Tübingen", tags="night, blue"),
        dict(params=tiny_params(styles=(STYLE2,), size=48), title="Scream", tags="red"),
        dict(params=tiny_params(styles=(STYLE, STYLE2), size=64), title="Blend", tags="blue, mix", owner="bo"),
        dict(params=tiny_params(styles=(STYLE3,)), title="", tags=""),
    ]
    for spec in specs:
        finished_run(g, **spec)
    g.set_favorite(2, True)
    g.submit(tiny_params(styles=(STYLE3,)), title="waiting")
    yield g
    g.close()


def ids(runs) -> list[int]:
    return [r.id for r in runs]


def test_filters(filled: Gallery) -> None:
    g = filled
    assert ids(g.list_runs()) == [5, 4, 3, 2, 1]
    assert ids(g.list_runs(sort="oldest")) == [1, 2, 3, 4, 5]
    assert ids(g.list_runs(RunFilter(status="done", style="starry_night.jpg"))) == [3, 1]
    sha = g.get(2).style_sha256s[0]
    assert ids(g.list_runs(RunFilter(style=sha))) == [3, 2]
    assert ids(g.list_runs(RunFilter(status=["queued", "failed"]))) == [5]
    assert ids(g.list_runs(RunFilter(favorite=True))) == [2]
    assert ids(g.list_runs(RunFilter(favorite=False, status="done"))) == [4, 3, 1]
    assert ids(g.list_runs(RunFilter(owner="bo"))) == [3]
    assert ids(g.list_runs(RunFilter(min_size=48))) == [3, 2]
    assert ids(g.list_runs(RunFilter(max_size=40))) == [5, 4, 1]
    assert ids(g.list_runs(limit=2, offset=1)) == [4, 3]
    assert ids(g.list_runs(RunFilter(status="done"), sort="title")) == [3, 2, 1, 4]
    # run_ids: the same page, ids only
    for where, sort, limit, offset in ((None, "newest", 50, 0), (RunFilter(status="done"), "title", 3, 1),
                                       (RunFilter(favorite=False, status="done"), "oldest", 2, 0)):
        assert g.run_ids(where, sort, limit, offset) == ids(g.list_runs(where, sort, limit, offset))
    now = datetime.now(UTC)
    assert len(g.list_runs(RunFilter(since=now - timedelta(minutes=5)))) == 5
    assert g.list_runs(RunFilter(until=now - timedelta(minutes=5))) == []
    assert g.list_runs(RunFilter(since=datetime.now() + timedelta(hours=1))) == []  # naive means local time
    assert g.count_runs(RunFilter(status="done")) == 4 and g.count_runs(RunFilter(style="the_scream.jpg", favorite=True)) == 1
    with pytest.raises(GalleryError):
        g.list_runs(RunFilter(status="finished"))
    with pytest.raises(GalleryError):
        g.list_runs(sort="random")
    with pytest.raises(GalleryError):
        g.list_runs(limit=0)


def test_full_text_search(filled: Gallery) -> None:
    g = filled
    assert ids(g.list_runs(RunFilter(search="blue"))) == [3, 1]
    assert ids(g.list_runs(RunFilter(search="tübingen"))) == [5, 4, 3, 2, 1]  # content name; diacritics ignored
    assert ids(g.list_runs(RunFilter(search="Starry"))) == [3, 1]  # title or style name
    assert ids(g.list_runs(RunFilter(search="scre"))) == [3, 2]  # prefixes match
    assert ids(g.list_runs(RunFilter(search="picasso"))) == [5, 4]
    assert ids(g.list_runs(RunFilter(search="blue mix"))) == [3]  # every word
    assert ids(g.list_runs(RunFilter(search="blue", status="done", style="the_scream.jpg"))) == [3]
    assert ids(g.list_runs(RunFilter(tag="blue"))) == [3, 1]
    assert ids(g.list_runs(RunFilter(search='blue" OR NOT('))) == []  # FTS syntax is taken as words to find
    assert ids(g.list_runs(RunFilter(search='"( * -:'))) == ids(g.list_runs())  # no words: no filter
    assert g.list_runs(RunFilter(search="nothing-like-this")) == []
    assert g.count_runs(RunFilter(search="blue")) == 2
    g.set_title_tags(4, "Portrait\u202e of x", ["cubism", " Cubism ", "red"])
    assert g.get(4).title == "Portrait of x" and g.get(4).tags == "cubism, red"
    assert ids(g.list_runs(RunFilter(search="cubism"))) == [4]
    assert ids(g.list_runs(RunFilter(search="red"))) == [4, 2]
    g.delete(4)
    assert ids(g.list_runs(RunFilter(search="cubism"))) == []


def test_run_to_dict_is_json(filled: Gallery) -> None:
    d = filled.get(1).to_dict()
    assert json.loads(json.dumps(d))["params"]["size"] == 32
    assert d["status"] == "done" and d["result_path"].endswith("runs/1/result.png")


def test_export_png_refuses_unfinished(filled: Gallery) -> None:
    with pytest.raises(GalleryError, match="only finished runs"):
        filled.export_png(5)
    png = filled.export_png(1)
    assert Image.open(io.BytesIO(png)).format == "PNG"


def test_params_naming_a_fifo_are_refused_not_read(tmp_path) -> None:
    """Gallery.submit copies a path's image in through the bounded reader: before, a FIFO hung
    it for good (and /dev/zero, not tried here for that reason, filled memory)."""
    import os
    import threading

    from engine.params import ParamsError

    g = Gallery(tmp_path / "data")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    errors: list[str] = []

    def submit() -> None:
        try:
            g.submit(tiny_params(content=str(fifo)))
        except ParamsError as e:
            errors.append(e.errors["content"])
    worker = threading.Thread(target=submit, daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():  # the old code, stuck in open(): let it go on
        with open(fifo, "wb"):
            pass
    assert errors and "not a regular file" in errors[0], errors
    assert g.count_runs() == 0
