"""The app's workers are processes of their own (worker/supervisor.py): they run the real engine,
come back when killed, release the run they held, obey a cancel at once, and say why when they
cannot start."""
from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from gallery import Gallery
from gallery.procs import pid_alive
from harness.waiting import wait_for
from support.app import APP, assert_ok
from support.browser import ARTIFACTS, chromium, needs_chromium, studio_process, wait_css
from support.runs import tiny_params
from worker.supervisor import Supervisor, default_devices, threads_per_worker


@pytest.fixture
def supervisor(data_dir: Path) -> Iterator[Supervisor]:
    s = Supervisor(data_dir, ["cpu"], threads=1).start()
    yield s
    s.stop()


def the_pid(s: Supervisor) -> int:
    (state,) = s.states()
    return state.pid if state.alive else 0


def test_jobs_run_in_the_supervised_process(data_dir: Path, supervisor: Supervisor) -> None:
    with Gallery(data_dir) as g:
        rid = g.submit(tiny_params(iterations=3))
        wait_for(lambda: g.get(rid).status == "done", 120, "the job")
        row = g.db["runs"].get(rid)
    pid = wait_for(lambda: the_pid(supervisor), 5, "the worker")
    assert row["worker_pid"] == pid != os.getpid()
    assert supervisor.states()[0].starts == 1 and supervisor.states()[0].last_error is None


@pytest.mark.kill
def test_a_killed_worker_comes_back_and_its_run_is_interrupted(data_dir: Path, supervisor: Supervisor) -> None:
    with Gallery(data_dir) as g:
        rid = g.submit(tiny_params(size=64, iterations=5000))
        wait_for(lambda: g.get(rid).iteration >= 2, 120, "the job's progress")
        first = the_pid(supervisor)
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: g.get(rid).status == "interrupted", 20, "the run interrupted")
        second = wait_for(lambda: the_pid(supervisor), 20, "a new worker")
        assert second != first
        state = supervisor.states()[0]
        assert state.starts == 2 and "killed by signal SIGKILL" in state.last_error
        again = g.requeue(rid)
        wait_for(lambda: g.get(again).status == "running" and g.get(again).iteration >= 1, 120, "the re-queued run")
        assert g.db["runs"].get(again)["worker_pid"] == second


def test_a_cancel_reaches_the_worker_within_an_iteration(data_dir: Path, supervisor: Supervisor) -> None:
    # 256 px: an iteration takes longer than the worker's 0.5 s between progress writes, so the
    # iteration read here is the one in flight, give or take the one being written.
    with Gallery(data_dir) as g:
        rid = g.submit(tiny_params(size=256, iterations=500))
        seen = wait_for(lambda: g.get(rid).iteration >= 2 and g.get(rid).iteration, 180, "the job's progress")
        g.request_cancel(rid)
        wait_for(lambda: g.get(rid).status == "cancelled", 30, "the cancel")
        assert g.get(rid).iteration <= seen + 2


def test_stop_ends_the_workers_and_interrupts_their_run(data_dir: Path) -> None:
    s = Supervisor(data_dir, ["cpu"], threads=1).start()
    with Gallery(data_dir) as g:
        rid = g.submit(tiny_params(size=64, iterations=5000))
        wait_for(lambda: g.get(rid).iteration >= 1, 120, "the job's progress")
        pid = the_pid(s)
        s.stop()
        assert not s.alive and not Path(f"/proc/{pid}").exists()
        assert g.get(rid).status == "interrupted"


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_a_worker_that_cannot_start_says_why_in_the_sidebar(data_dir: Path, monkeypatch) -> None:
    from streamlit.testing.v1 import AppTest

    from app_pages import common

    monkeypatch.setenv("STUDIO_DATA", str(data_dir))
    monkeypatch.setenv("STUDIO_WORKER", "1")
    monkeypatch.setenv("STUDIO_DEVICES", "cuda")
    at = AppTest.from_file(APP, default_timeout=60).run()
    try:
        assert_ok(at)
        supervisor = common.ensure_worker()
        wait_for(lambda: supervisor.states()[0].last_error, 60, "the worker's failure")
        at.run()
        (warning,) = [w.value for w in at.sidebar.warning]
        assert "cuda worker not running" in warning and "CUDA is not available on this machine" in warning
    finally:
        common.ensure_worker().stop()
        common._supervisor.clear()


def test_threads_share_the_cores() -> None:
    assert threads_per_worker(1, 16) == 16
    assert threads_per_worker(3, 16) == 5
    assert threads_per_worker(4, 2) == 1



def test_one_worker_per_gpu_where_there_are_several(monkeypatch) -> None:
    assert default_devices(" cpu, cuda:1 ") == ["cpu", "cuda:1"]
    assert default_devices("", gpus=0) == default_devices("", gpus=1) == ["auto"]
    assert default_devices("", gpus=3) == ["cuda:0", "cuda:1", "cuda:2", "cpu"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert default_devices("") == ["cuda:0", "cuda:1", "cpu"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert default_devices("") == ["auto"]


def worker_children(pid: int) -> list[int]:
    """The `python -m worker work` processes that process `pid` started."""
    found = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in children.read_text().split():
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            if b"worker" in cmdline and b"work" in cmdline:
                found.append(int(child))
    return found


@pytest.mark.browser
@pytest.mark.kill
@needs_chromium
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
def test_the_app_starts_its_worker_and_takes_it_down(tmp_path: Path, signum: int) -> None:
    data = tmp_path / "data"
    log = ARTIFACTS / f"worker-process-{signum.name}.log"
    with studio_process(data, log, STUDIO_DEVICES="cpu") as (url, server), chromium(tmp_path / "dl") as driver:
        driver.get(url)
        wait_css(driver, ".st-key-generate", timeout=60)
        (worker,) = wait_for(lambda: worker_children(server.pid), 30, "the app's worker process")
        try:
            with Gallery(data) as g:
                rid = g.submit(tiny_params(size=64, iterations=5000))
                wait_for(lambda: g.get(rid).iteration >= 1, 120, "the job's progress")
                assert g.db["runs"].get(rid)["worker_pid"] == worker != server.pid
                server.send_signal(signum)  # killed: the kernel's parent-death signal stops the worker
                server.wait(30)
                wait_for(lambda: not pid_alive(worker), 20, "the worker to end with the app")
                run = g.get(rid)
                assert run.status == "interrupted" and "stopped before the run finished" in run.error
        finally:
            if pid_alive(worker):  # failed: no orphan may outlive the test
                os.kill(worker, signal.SIGKILL)
