"""A worker process killed with SIGKILL in the middle of a job: the gallery stays whole."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from engine import pngmeta
from gallery import Gallery, RunFilter
from harness.paths import CONTENT, ROOT, STYLE
from harness.waiting import wait_for
from support.fake_engine import FakeEngine
from support.runs import files_under, finished_run, named_files
from worker import Worker

pytestmark = pytest.mark.kill


def test_sigkill_mid_job_leaves_a_consistent_gallery(data_dir: Path) -> None:
    with Gallery(data_dir) as g:
        kept = [finished_run(g, title=f"kept {i}") for i in range(2)]
        kept_bytes = {rid: g.get(rid).result_path.read_bytes() for rid in kept}

    # Previews every iteration, so files are being written when the kill lands.
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker", "--data", str(data_dir), "run", str(CONTENT), str(STYLE),
         "--size", "64", "--iterations", "5000", "--device", "cpu", "--no-multiscale", "--save-every", "1",
         "--title", "doomed"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        with Gallery(data_dir) as g:
            wait_for(lambda: g.count_runs(RunFilter(status="running"))
                     and g.list_runs(RunFilter(status="running"))[0].iteration >= 2,
                     120, "the subprocess's progress")
            killed = g.list_runs(RunFilter(status="running"))[0].id
    finally:
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, err.decode()
    assert f"run {killed} queued" in out.decode()

    with Gallery(data_dir) as g:
        assert g.get(killed).status == "running"  # nobody has looked yet
        worker = Worker(data_dir, "cpu", engine=FakeEngine(), poll_interval=0.05).start()
        try:
            wait_for(lambda: g.get(killed).status == "interrupted", 20, "recovery on worker start")
        finally:
            worker.stop(timeout=10)

        run = g.get(killed)
        assert run.title == "doomed" and run.params.iterations == 5000 and run.params.size == 64
        assert "stopped before the run finished" in run.error and run.iteration >= 2
        assert run.result_path is None
        for rid in kept:
            kept_run = g.get(rid)
            assert kept_run.status == "done"
            assert kept_run.result_path.read_bytes() == kept_bytes[rid]
            Image.open(kept_run.result_path).load()
            assert pngmeta.read_params_json(kept_run.result_path)
        for _, path in g.previews(killed):
            Image.open(path).load()  # every preview a row names is whole
        # No orphans: every file is named by a row, no temporary file is left.
        assert files_under(data_dir) <= named_files(g)
        assert not list(data_dir.rglob("*.tmp"))

        again = g.get(g.requeue(killed))
        assert again.status == "queued" and again.params == run.params

    conn = sqlite3.connect(data_dir / "gallery.db")
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()
