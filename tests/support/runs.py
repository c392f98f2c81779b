"""Runs without the engine: tiny parameters, a stand-in result, finished runs (a clip's too),
the files a gallery holds."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from PIL import Image

from engine.params import Params
from gallery import Gallery
from gallery.housekeeping import NAMED_FILES_SQL
from harness.paths import CONTENT, STYLE


def tiny_params(content: Path = CONTENT, styles: tuple[Path, ...] = (STYLE,), **changes) -> Params:
    settings = {"size": 32, "iterations": 2, "device": "cpu", "multiscale": False, **changes}
    return Params(content=str(content), styles=tuple(map(str, styles)), **settings)


def fake_result(color: str = "red", previews: int = 0, size: tuple[int, int] = (32, 24),
                preview_every: int = 1) -> SimpleNamespace:
    """Duck-types engine.transfer.Result (what the gallery's finish() takes), without running the
    engine: an image of one colour and `previews` grey previews, every `preview_every` iterations."""
    return SimpleNamespace(
        image=Image.new("RGB", size, color), losses={"total": 1.5, "content": 1.0, "style": 0.5, "tv": 0.0},
        timings={"setup": 0.1, "optimize": 0.2, "total": 0.3},
        previews=[(preview_every * i, Image.new("RGB", size, "gray")) for i in range(1, previews + 1)],
        weights_name="caffe", weights_sha256="ab" * 32, device="cpu")


def finished_run(g: Gallery, **submit) -> int:
    """A "done" run with fake_result()'s files; `submit` goes to Gallery.submit (params= too)."""
    params = submit.pop("params", None) or tiny_params()
    rid = g.submit(params, **submit)
    assert g.claim(rid, "test") is not None
    g.finish(rid, fake_result())
    return rid


def finished_clip_run(g: Gallery, durations_ms: tuple[int, ...] = (90, 110, 130), **submit) -> int:
    """A "done" clip run as the worker leaves one, without the engine: a GIF of
    len(durations_ms) frames (support.images.pan) as content, every frame kept, the animation
    stored; `submit` goes to Gallery.submit."""
    from engine.clips import gif_bytes
    from support.images import pan

    gif = g.add_input(gif_bytes(pan(len(durations_ms), durations_ms)), "pan.gif", "content")
    rid = g.submit(tiny_params(content=gif.path, size=64), **submit)
    assert g.claim(rid, "test") is not None
    styled = pan(len(durations_ms), durations_ms)
    styled.frames = [f.resize((64, 48)) for f in styled.frames]
    for k, frame in enumerate(styled.frames):
        g.record_frame(rid, k, frame)
    g.finish(rid, fake_result(size=(64, 48)), styled)
    return rid


def files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def named_files(g: Gallery) -> set[str]:
    """Every file a row of g names, the database's own files, the worker processes' logs and the
    browsers' drafts (gallery/drafts.py: one JSON file per owner, named by it)."""
    rows = g.db.query(NAMED_FILES_SQL)
    logs = {f"logs/{p.name}" for p in (g.data_dir / "logs").glob("worker-*.log")}
    drafts = {f"drafts/{p.name}" for p in (g.data_dir / "drafts").glob("*.json")}
    return {row["file"] for row in rows} | {"gallery.db", "gallery.db-wal", "gallery.db-shm"} | logs | drafts


def dead_pid() -> int:
    """The pid of a process that has ended (for runs whose worker is gone)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid
