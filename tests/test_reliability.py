"""Bad input and faults, each through the studio's real paths: the Create page (AppTest), the
worker, the command lines, and a real `streamlit run` server driven by headless Chromium.

engine.images has its own unit tests (tests/test_images.py) and the gallery its own
(tests/test_gallery_store.py); these check what a person sees: one clear message or a correct
result, and a studio that keeps working afterwards. What each test saw goes to
test-artifacts/reliability-*.json, which docs/reliability.md summarises.
"""
from __future__ import annotations

import errno
import gc
import hashlib
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import streamlit as st
from PIL import Image
from streamlit.testing.v1 import AppTest

from engine.images import MAX_BYTES
from gallery import Gallery, RunFilter, files
from harness.paths import CONTENT, ROOT, STYLE
from harness.waiting import wait_for
from support.app import APP, app, assert_ok, uploader
from support.browser import ARTIFACTS, chromium, click, needs_chromium, owner_of, studio_process, studio_server, wait_css
from support.fake_engine import FakeEngine
from support.images import encode, noisy, png_with_header, with_orientation
from support.runs import files_under, finished_run, named_files, tiny_params
from worker import Worker
from worker import local as worker_module

# --- helpers ------------------------------------------------------------------------------------------


def record(name: str, rows: list[dict]) -> None:
    """What a test saw, for docs/reliability.md."""
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"reliability-{name}.json").write_text(json.dumps(rows, indent=1, ensure_ascii=False))


def run_queue_until_ended(g: Gallery, last: int) -> None:
    """A real CPU worker on g's queue until the run `last` (queued after the others) has ended."""
    w = Worker(g.data_dir, "cpu", poll_interval=0.05).start()
    try:
        wait_for(lambda: g.get(last).status not in ("queued", "running"), 300, "the queued jobs")
    finally:
        w.stop(timeout=30)


def integrity(db: Path) -> list[tuple]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        conn.close()


def column(g: Gallery, rid: int, name: str):
    """A column the Run dataclass does not carry (which process ran it, the result's hash)."""
    return g.db.execute(f"SELECT {name} FROM runs WHERE id = ?", [rid]).fetchone()[0]


def shown_errors(at: AppTest) -> list[str]:
    return [e.value.replace("\\", "") for e in at.error]  # escape_md's backslashes


def visible(text: str) -> bool:
    """No control, format (bidi overrides, zero-width) or separator characters."""
    return not any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in text)


# --- hostile uploads through the Create page --------------------------------------------------------------

def _gif_animated() -> bytes:
    frames = [Image.new("P", (40, 30), i * 60) for i in range(3)]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=80, loop=0)
    return out.getvalue()


def _webp_animated() -> bytes:
    frames = [Image.new("RGB", (40, 30), c) for c in ("red", "green", "blue")]
    out = io.BytesIO()
    frames[0].save(out, "WEBP", save_all=True, append_images=frames[1:], duration=80)
    return out.getvalue()


def _palette_with_transparency() -> bytes:
    img = Image.new("P", (40, 30), 1)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    return encode(img, "PNG", transparency=1)


def _cut(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _jpeg() -> bytes:
    return encode(noisy(), "JPEG")


def _png() -> bytes:
    return encode(Image.new("RGB", (40, 30), "red"), "PNG")


@dataclass
class Upload:
    case: str  # the test id
    name: str
    make: Callable[[], bytes]  # called in the test, so collecting builds no 50 MB file
    error: str | None = None  # a phrase of the expected message; None: accepted
    size: tuple[int, int] | None = None  # the stored image's size, where it says something
    # Streamlit's own check of the name (extension, NUL) refuses it before our code runs. Browsers
    # never send such names (the file picker filters by extension); a hand-made request can.
    streamlit_refuses: str | None = None


HOSTILE_UPLOADS = [
    Upload("zero bytes", "empty.png", lambda: b"", "This file is empty."),
    Upload("random bytes", "noise.jpg", lambda: bytes((i * 193 + 71) % 256 for i in range(4096)),
           "not an image we can read"),
    Upload("HTML named .png", "page.png", lambda: b"<!DOCTYPE html><html><body>hi</body></html>", "looks like HTML"),
    Upload("SVG named .png", "drawing.png", lambda: b'<svg xmlns="http://www.w3.org/2000/svg"/>', "looks like SVG"),
    Upload("text named .jpg", "notes.jpg", lambda: b"hello\n" * 100, "looks like text"),
    Upload("truncated JPEG", "cut.jpg", lambda: _cut(_jpeg()), "truncated or damaged"),
    Upload("truncated PNG", "cut.png", lambda: _cut(encode(noisy(), "PNG")), "truncated or damaged"),
    Upload("decompression bomb 20000x20000 (Pillow's limit)", "bomb.png", lambda: png_with_header(20_000, 20_000),
           "too large"),
    Upload("decompression bomb 8000x6000 (our 40 MP limit)", "bomb2.png", lambda: png_with_header(8000, 6000),
           "too large: 8000×6000"),
    Upload("50 MB + 1 byte", "huge.jpg", lambda: _jpeg() + b"\0" * (MAX_BYTES + 1 - len(_jpeg())), "limit is 50 MB"),
    Upload("1x1", "dot.png", lambda: encode(Image.new("RGB", (1, 1), "red"), "PNG"), size=(1, 1)),
    Upload("8000x16", "strip.png", lambda: encode(Image.new("RGB", (8000, 16), "red"), "PNG"), size=(8000, 16)),
    Upload("6000x4000", "photo.jpg", lambda: encode(Image.new("RGB", (6000, 4000), "teal"), "JPEG"),
           size=(6000, 4000)),
    Upload("mode L", "l.png", lambda: encode(Image.new("L", (40, 30), 128), "PNG")),
    Upload("mode LA", "la.png", lambda: encode(Image.new("LA", (40, 30), (128, 100)), "PNG")),
    Upload("mode P + transparency", "p.png", _palette_with_transparency),
    Upload("mode RGBA", "rgba.png", lambda: encode(Image.new("RGBA", (40, 30), (255, 0, 0, 90)), "PNG")),
    Upload("mode CMYK (JPEG)", "cmyk.jpg", lambda: encode(Image.new("CMYK", (40, 30), (0, 255, 255, 0)), "JPEG")),
    Upload("mode I;16", "i16.png", lambda: encode(Image.new("I;16", (40, 30), 40000), "PNG")),
    Upload("EXIF orientation 6", "rotated.jpg", lambda: with_orientation(noisy((64, 48)), 6), size=(48, 64)),
    Upload("animated GIF", "anim.gif", _gif_animated, size=(40, 30)),
    Upload("animated WebP", "anim.webp", _webp_animated, size=(40, 30)),
    Upload("TIFF", "scan.tif", lambda: encode(noisy(), "TIFF")),
    Upload("BMP", "paint.bmp", lambda: encode(noisy(), "BMP")),
    Upload("name: path traversal", "../../../../tmp/evil.png", _png),
    Upload("name: Windows path", "C:\\Windows\\System32\\evil.png", _png),
    Upload("name: 300 characters", "a" * 300 + ".png", _png),
    Upload("name: control characters", "ctl\x07\x1b[31m\n\t.png", _png),
    Upload("name: right-to-left override", "invoice\u202excod.png", _png),
    Upload("name: right-to-left override, bad content", "cat\u202egpj.png", lambda: b"", "This file is empty."),
    Upload("name: NUL byte", "nul\x00.png", _png, streamlit_refuses="Filename cannot contain null bytes"),
    Upload("name: .exe behind a right-to-left override", "photo\u202egnp.exe", _png,
           streamlit_refuses="Invalid file extension: `.exe`"),
    Upload("name: '..'", "..", _png, streamlit_refuses="Invalid file extension"),
]


@pytest.fixture(scope="module")
def upload_log():
    """What each hostile upload did, written once all have run."""
    rows: list[dict] = []
    yield rows
    record("uploads", rows)


@pytest.mark.parametrize("u", HOSTILE_UPLOADS, ids=lambda u: u.case)
def test_a_hostile_upload_gets_a_result_or_one_message_and_the_page_goes_on(studio, tmp_path: Path, upload_log,
                                                                           u: Upload):
    outside_before = {p for p in tmp_path.rglob("*") if "data" not in p.relative_to(tmp_path).parts}
    at = app()
    before = list(at.session_state["content_chosen"])
    data = u.make()
    t0 = time.perf_counter()
    uploader(at, "content").set_value((u.name, data, "image/png"))
    at.run()
    row = {"case": u.case, "seconds": round(time.perf_counter() - t0, 2)}
    errors = shown_errors(at)
    chosen = at.session_state["content_chosen"]
    if u.streamlit_refuses:
        refused = [e.value for e in at.exception]
        upload_log.append(row | {"outcome": "refused by Streamlit", "message": refused[0] if refused else None})
        assert len(refused) == 1 and u.streamlit_refuses in refused[0], refused
        assert chosen == before
    elif u.error is None:
        assert_ok(at)
        assert chosen != before, errors
        (item,) = chosen
        (stored,) = studio.list_inputs()
        upload_log.append(row | {"outcome": "accepted", "shown_name": item["name"],
                                 "stored": f"inputs/{Path(item['path']).name}", "size": f"{stored.width}×{stored.height}"})
        assert not errors
        path = Path(item["path"])
        assert path.parent == studio.data_dir / "inputs" and path.stem == stored.sha256
        name = item["name"]
        assert visible(name) and "/" not in name and "\\" not in name and len(name) <= 100, name
        if u.size:
            assert (stored.width, stored.height) == u.size
    else:
        assert_ok(at)
        upload_log.append(row | {"outcome": "message", "message": errors[0] if errors else None})
        assert len(errors) == 1 and u.error in errors[0] and visible(errors[0]), errors
        assert chosen == before
    at.run()
    assert_ok(at)  # and the next run draws the page
    # Nothing was written outside the data folder, and nothing there is named after an upload.
    outside_after = {p for p in tmp_path.rglob("*") if "data" not in p.relative_to(tmp_path).parts}
    assert outside_after == outside_before
    assert {p.stem for p in (studio.data_dir / "inputs").glob("*")} <= {i.sha256 for i in studio.list_inputs()}


def test_after_every_hostile_upload_in_one_session_a_real_pair_still_queues_a_run(studio):
    at = app()
    for u in HOSTILE_UPLOADS:
        uploader(at, "content").set_value((u.name, u.make(), "image/png"))
        at.run()
        if u.streamlit_refuses:
            at.run()  # Streamlit's refusal ends that run; a person's next click starts a clean one
    uploader(at, "content").set_value((CONTENT.name, CONTENT.read_bytes(), "image/jpeg"))
    at.run()
    uploader(at, "style").set_value([(STYLE.name, STYLE.read_bytes(), "image/jpeg")])
    at.run()
    at.button(key="generate").click().run()
    assert_ok(at)
    (run,) = studio.list_runs(RunFilter(status="queued"))
    assert run.content_name == CONTENT.name and run.style_names == [STYLE.name]


def test_several_style_files_at_once_keep_the_good_ones(studio):
    at = app()
    uploader(at, "style").set_value([(STYLE.name, STYLE.read_bytes(), "image/jpeg"),
                                     ("evil\u202egpj.png", b"<html></html>", "image/png"),
                                     ("cut.png", _cut(encode(noisy(), "PNG")), "image/png")])
    at.run()
    assert_ok(at)
    assert [i["name"] for i in at.session_state["style_chosen"]] == [STYLE.name]
    (message,) = shown_errors(at)
    assert "evilgpj.png: This is not an image we can read (looks like HTML)" in message
    assert "cut.png: The image file is truncated or damaged." in message and visible(message)


def test_an_upload_too_extreme_for_the_size_fails_its_job_with_the_reason(data_dir: Path):
    """8000×16 is a valid image, but at 64 px its short side would be 0 px: the job says so."""
    with Gallery(data_dir) as g:
        strip = g.add_input(encode(Image.new("RGB", (8000, 16), "red"), "PNG"), "strip.png")
        dot = g.add_input(encode(Image.new("RGB", (1, 1), "red"), "PNG"), "dot.png")
        bad = g.submit(tiny_params(content=strip.path, size=64))
        good = g.submit(tiny_params(content=dot.path, size=32))  # 1×1 scales up: blurry, but fine
        run_queue_until_ended(g, good)
        assert g.get(bad).status == "failed"
        assert "too short for this size: 8000×16 pixels would become 64×1" in g.get(bad).error
        assert g.get(good).status == "done", g.get(good).error
        assert Image.open(g.get(good).result_path).size == (32, 32)


# --- hostile URLs and parameters --------------------------------------------------------------------------

@pytest.mark.parametrize("page, query", [
    (None, {"run": "²"}), (None, {"run": "-1"}), (None, {"run": "9" * 30}), (None, {"batch": "../../etc"}),
    (None, {"from": "²"}), (None, {"from": "0"}), (None, {"owner": "../../x"}), (None, {"owner": "a" * 5000}),
    ("app_pages/gallery.py", {"run": "²"}), ("app_pages/gallery.py", {"run": "1; DROP TABLE runs"}),
    ("app_pages/gallery.py", {"compare": "²,³,x,-1,1e9"}), ("app_pages/queue.py", {"owner": "\u202e"}),
])
def test_hand_edited_urls_never_break_a_page(studio, page: str | None, query: dict[str, str]):
    at = app(page, **query)
    assert_ok(at)
    assert studio.count_runs() == 0 and at.title


def test_hand_edited_parameters_get_the_validation_message(studio):
    """A run whose stored parameters were edited by hand (or came from an edited PNG) and is
    re-run from the Gallery: the form shows each problem and refuses to queue it."""
    rid = studio.submit(tiny_params())
    bad = json.loads(studio.get(rid).params.to_json()) | {"size": 99999, "iterations": 0, "style_weight": -1.0,
                                                          "optimizer": "sgd"}
    studio.db.execute("UPDATE runs SET params_json = ? WHERE id = ?", [json.dumps(bad), rid])
    at = app(**{"from": str(rid)})
    assert_ok(at)
    shown = " ".join(shown_errors(at))
    for phrase in ("at most 16384, got 99999", "at least 1 and at most 10000, got 0", "at least 0",
                   "must be one of lbfgs, adam, got 'sgd'"):
        assert phrase in shown, (phrase, shown)
    assert at.button(key="generate").disabled
    assert studio.count_runs() == 1


@pytest.mark.parametrize("argv, phrases", [
    (["-m", "engine", str(CONTENT), str(STYLE), "--size", "99999", "--iterations", "0", "-o", "{out}"],
     ["size: must be at least 16 and at most 16384, got 99999", "iterations: must be at least 1"]),
    (["-m", "engine", str(CONTENT), str(STYLE), "--style-weight", "nan", "-o", "{out}"], ["style_weight: must be a number"]),
    (["-m", "worker", "--data", "{data}", "run", str(CONTENT), str(STYLE), "--size", "8", "--device", "tpu"],
     ["size: must be at least 16 and at most 16384, got 8",
      "device: must be one of auto, cpu, cuda or cuda:N (one GPU of several), got 'tpu'"]),
    (["-m", "gallery", "--data", "{data}", "show", "../1"], ["A run id is a whole number"]),
])
def test_out_of_range_parameters_on_the_command_lines(tmp_path: Path, argv: list[str], phrases: list[str]):
    argv = [a.format(out=tmp_path / "out.png", data=tmp_path / "data") for a in argv]
    proc = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    for phrase in phrases:
        assert phrase in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) <= 2
    assert not (tmp_path / "out.png").exists()


# --- a corrupt or foreign gallery.db ----------------------------------------------------------------------

def _foreign_sqlite(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL)")
    conn.commit()
    conn.close()


def _real_gallery(path: Path) -> None:
    with Gallery(path.parent) as g:
        for i in range(30):  # a few pages, so a damaged page is one in the middle
            g.submit(tiny_params(seed=i), title="x" * 1000)
        g.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _damaged(path: Path) -> None:
    _real_gallery(path)
    data = bytearray(path.read_bytes())
    page = 4096
    data[3 * page: 4 * page] = b"\xa5" * page
    path.write_bytes(bytes(data))


def _truncated(path: Path) -> None:
    _real_gallery(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _newer(path: Path) -> None:
    _real_gallery(path)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()


CORRUPT_DBS = {
    "random bytes": lambda p: p.write_bytes(os.urandom(64 * 1024)),
    "a text file": lambda p: p.write_text("gallery notes\n" * 100),
    "another program's SQLite database": _foreign_sqlite,
    "a gallery with a page overwritten": _damaged,
    "a gallery cut in half": _truncated,
    "a gallery from a newer release": _newer,
}


@pytest.mark.parametrize("kind", list(CORRUPT_DBS))
def test_a_corrupt_or_foreign_database_stops_the_app_untouched(data_dir: Path, monkeypatch, kind: str):
    db = data_dir / "gallery.db"
    CORRUPT_DBS[kind](db)
    for extra in data_dir.glob("gallery.db-*"):
        extra.unlink()
    before = (db.read_bytes(), db.stat().st_mtime_ns, sorted(data_dir.rglob("*")))
    monkeypatch.setenv("STUDIO_DATA", str(data_dir))
    monkeypatch.setenv("STUDIO_WORKER", "1")  # the real app would start a worker: it must not get that far
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert_ok(at)
    (message,) = shown_errors(at)
    assert f"Cannot open the data folder {data_dir}" in message
    assert ("move it away" in message and "STUDIO_DATA" in message) or "Upgrade the studio" in message, message
    assert not at.title  # no page was drawn
    after = (db.read_bytes(), db.stat().st_mtime_ns, sorted(data_dir.rglob("*")))
    assert after[:2] == before[:2]
    # SQLite's read-only check of a WAL-mode file may create its (empty) -wal and -shm; nothing else.
    new = set(after[2]) - set(before[2])
    assert {p.name for p in new} <= {"gallery.db-wal", "gallery.db-shm"}
    assert all(p.stat().st_size == 0 for p in new if p.name.endswith("-wal"))
    record("db-" + "-".join(kind.replace("'", "").split()), [{"case": kind, "message": message}])


def test_a_corrupt_database_stops_the_command_line_too(data_dir: Path):
    (data_dir / "gallery.db").write_bytes(os.urandom(8192))
    proc = subprocess.run([sys.executable, "-m", "gallery", "--data", str(data_dir), "list"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "move it away" in proc.stderr and "Traceback" not in proc.stderr


# --- a full disk ---------------------------------------------------------------------------------------------

class BigResultEngine(FakeEngine):
    """FakeEngine whose result is `side`² of noise: a PNG of about 3·side² bytes to save."""

    def __init__(self, side: int = 400):
        super().__init__()
        self.side = side

    def run(self, params, on_progress=None, should_cancel=None, memory_budget=None):
        result = super().run(params, on_progress, should_cancel, memory_budget)
        result.image = Image.frombytes("RGB", (self.side, self.side), os.urandom(self.side * self.side * 3))
        return result


def _fills_the_disk_halfway(real_open):
    """open() for gallery.files whose writes of result.png store half the bytes, then fail as a
    full disk does."""
    class HalfWriter:
        def __init__(self, f):
            self._f = f

        def write(self, data: bytes) -> int:
            self._f.write(data[: len(data) // 2])
            self._f.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(self._f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self._f.__exit__(*exc)

    def fake_open(path, mode="r", *args, **kwargs):
        f = real_open(path, mode, *args, **kwargs)
        return HalfWriter(f) if "result.png" in str(path) and set(mode) & set("wxa") else f
    return fake_open


def test_disk_full_while_saving_fails_the_job_cleanly(data_dir: Path, monkeypatch):
    monkeypatch.setattr(files, "open", _fills_the_disk_halfway(open), raising=False)
    with Gallery(data_dir) as g:
        doomed = g.submit(tiny_params(seed=1, preview_every=1))
        w = Worker(data_dir, "cpu", engine=FakeEngine(), poll_interval=0.05).start()
        try:
            wait_for(lambda: g.get(doomed).status == "failed", 30, "the failed save")
            run = g.get(doomed)
            assert run.error == "The result could not be saved: [Errno 28] No space left on device"
            assert run.result_path is None
            # No half-written file anywhere: no temporary file, nothing a row does not name.
            assert not list(data_dir.rglob("*.tmp")) and not list(data_dir.rglob("result.png"))
            assert files_under(data_dir) <= named_files(g)
            monkeypatch.undo()  # space freed: the next job saves
            ok = g.submit(tiny_params(seed=2))
            w.wake()
            wait_for(lambda: g.get(ok).status == "done", 30, "the next job")
        finally:
            w.stop(timeout=10)
    with Gallery(data_dir) as g:  # the gallery still opens
        assert [r.status for r in g.list_runs(sort="oldest")] == ["failed", "done"]
    assert integrity(data_dir / "gallery.db") == [("ok",)]


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 4 MB tmpfs (needs root; skipped where it cannot be mounted)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], capture_output=True)
    if os.path.ismount(mount):
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _fill(disk: Path, leave: int) -> Path:
    stat = os.statvfs(disk)
    ballast = disk / "ballast"
    with open(ballast, "wb") as f:
        f.write(b"\0" * max(0, stat.f_bavail * stat.f_frsize - leave))
    return ballast


def test_disk_really_full_on_a_small_tmpfs(small_disk: Path, monkeypatch):
    monkeypatch.setattr(worker_module, "ERROR_BACKOFF_S", 0.2)
    data = small_disk / "data"
    seen = []
    with Gallery(data) as g:
        first = g.submit(tiny_params(seed=1))
        ballast = _fill(small_disk, leave=40_000)  # room for the database's writes, not for a result
        w = Worker(data, "cpu", engine=BigResultEngine(), poll_interval=0.05).start()
        try:
            wait_for(lambda: w.last_error or g.get(first).status == "failed", 30, "the full disk")
            time.sleep(1)  # a few rounds of the worker's loop on a full disk
            seen.append({"while full": g.get(first).status, "error": g.get(first).error, "worker": w.last_error})
            assert w.alive
            # An upload on the full disk: one message on the Create page.
            monkeypatch.setenv("STUDIO_DATA", str(data))
            monkeypatch.setenv("STUDIO_WORKER", "0")
            at = app()
            uploader(at, "content").set_value(("big.png", encode(noisy((600, 600)), "PNG"), "image/png"))
            at.run()
            assert_ok(at)
            (message,) = shown_errors(at)
            assert "No space left on device" in message or "disk is full" in message
            seen.append({"upload while full": message})
            st.cache_resource.clear()  # the page's gallery handle: let go of the small disk

            ballast.unlink()  # space freed: the first job's end gets recorded, the next job saves
            wait_for(lambda: g.get(first).status == "failed", 30, "the first job's end to be recorded")
            second = g.submit(tiny_params(seed=2))
            w.wake()
            wait_for(lambda: g.get(second).status == "done", 30, "the next job once there is room")
        finally:
            w.stop(timeout=10)
        error = g.get(first).error
        seen.append({"after freeing": {r.id: (r.status, r.error) for r in g.list_runs()}})
        assert "No space left on device" in error or "disk is full" in error, error
        assert g.get(first).result_path is None and not list(data.rglob("*.tmp"))
        assert files_under(data) <= named_files(g)
    with Gallery(data) as g:
        assert g.count_runs() == 2
    assert integrity(data / "gallery.db") == [("ok",)]
    gc.collect()
    record("disk-full", seen)


# --- out of memory in a job ------------------------------------------------------------------------------------

def test_out_of_memory_fails_that_job_and_the_next_runs(data_dir: Path, monkeypatch):
    """The real engine on the CPU; the first optimisation step allocates "too much" the way
    PyTorch's CPU allocator reports it."""
    from engine import objective

    real_call = objective.Objective.__call__
    calls = {"n": 0}

    def allocation_fails_once(self, x):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate "
                               "memory: you tried to allocate 274877906944 bytes. Error code 12 (Cannot allocate memory)")
        return real_call(self, x)

    monkeypatch.setattr(objective.Objective, "__call__", allocation_fails_once)
    with Gallery(data_dir) as g:
        big = g.submit(tiny_params(seed=1, size=48))
        after = g.submit(tiny_params(seed=2))
        run_queue_until_ended(g, after)
        assert g.get(big).status == "failed"
        assert g.get(big).error == ("Out of memory at 48 px on cpu; try a smaller size (e.g. 24 px) "
                                    "or fewer style layers.")
        assert g.get(after).status == "done", g.get(after).error
        record("oom", [{"failed": g.get(big).error, "next": g.get(after).status}])


# --- the server killed mid-job -------------------------------------------------------------------------------------

@pytest.mark.browser
@pytest.mark.kill
@pytest.mark.slow
@needs_chromium
def test_server_killed_mid_job_then_restarted(tmp_path: Path):
    data = tmp_path / "data"
    with Gallery(data) as g:
        kept = [finished_run(g, owner="someone", title=f"kept {i}") for i in range(2)]
    timings = {}
    t_start = time.monotonic()
    with chromium(tmp_path / "downloads") as driver:
        with studio_process(data, ARTIFACTS / "reliability-kill-server-1.log") as (url, server), Gallery(data) as g:
            driver.get(url)  # the first session starts the server's worker
            owner = owner_of(driver)  # this browser's, kept in its cookie across the restart
            # Long, and saving a preview every iteration, so files are being written when the kill lands.
            doomed = g.submit(tiny_params(seed=9, size=64, iterations=5000, preview_every=1), owner=owner,
                              title="doomed")
            wait_for(lambda: g.get(doomed).status == "running" and g.get(doomed).iteration >= 5, 300,
                     "the long job to be under way", interval=0.2)
            timings["first server: start to kill (s)"] = round(time.monotonic() - t_start, 1)
            pid = column(g, doomed, "worker_pid")
            hashes = {rid: hashlib.sha256(g.get(rid).result_path.read_bytes()).hexdigest() for rid in kept}
            t0 = time.monotonic()
            # The worker process running the job and the server that supervises it, both at once
            # (as a power cut or the OOM killer would): nobody is left to mark the run.
            os.kill(pid, signal.SIGKILL)
            os.kill(server.pid, signal.SIGKILL)
            for gone in (pid, server.pid):
                wait_for(lambda: not Path(f"/proc/{gone}").exists() or "zombie" in Path(f"/proc/{gone}/status")
                         .read_text().lower(), 10, f"process {gone} to die")
        assert integrity(data / "gallery.db") == [("ok",)]
        with Gallery(data) as g:
            assert g.get(doomed).status == "running"  # as the kill left it: nobody has looked yet
            for rid in kept:
                run = g.get(rid)
                assert run.status == "done"
                assert hashlib.sha256(run.result_path.read_bytes()).hexdigest() == hashes[rid] == column(
                    g, rid, "result_sha256")
                Image.open(run.result_path).load()
                Image.open(run.thumb_path).load()
            for _, preview in g.previews(doomed):
                Image.open(preview).load()  # every preview a row names is whole

        with studio_server(data, ARTIFACTS / "reliability-kill-server-2.log") as url, Gallery(data) as g:
            timings["kill to restarted server healthy (s)"] = round(time.monotonic() - t0, 1)
            driver.get(f"{url}/queue")
            wait_css(driver, f".st-key-qrequeue-{doomed} button", timeout=60)
            wait_for(lambda: "Interrupted" in driver.find_element("tag name", "body").text, 30, "'Interrupted'")
            run = g.get(doomed)
            assert run.status == "interrupted" and "stopped before the run finished" in run.error
            click(driver, f".st-key-qrequeue-{doomed} button")
            again = wait_for(lambda: [r for r in g.list_runs() if r.requeued_from == doomed], 30, "the re-queued run")[0]
            assert again.params == run.params and again.owner == owner
            wait_for(lambda: g.get(again.id).status == "running", 120, "the re-queued run to start", interval=0.2)
            click(driver, f".st-key-qcancel-{again.id} button")
            wait_for(lambda: g.get(again.id).status == "cancelled", 60, "the cancel")
            assert files_under(data) <= named_files(g) and not list(data.rglob("*.tmp"))
        assert integrity(data / "gallery.db") == [("ok",)]
    record("kill", [{"killed run": doomed, "iteration reached": run.iteration, **timings}])
