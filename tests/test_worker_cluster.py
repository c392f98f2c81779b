"""Jobs on a real Ray cluster of two nodes on this machine (127.0.0.1 only, token auth), sent by
`python -m worker work --ray ADDRESS` as the app's worker would: spread and concurrent, results
as a local run's, live progress, cancel, a lost node, a killed head, no cluster at all."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gallery import Gallery, Run
from harness.paths import ROOT
from harness.ray_cluster import LocalCluster, local_cluster
from harness.studio import free_port
from harness.waiting import wait_for
from support.runs import tiny_params
from worker.cluster import STOP_ENV

pytestmark = [pytest.mark.cluster, pytest.mark.slow]  # slow: a minute and a half of Ray start-ups
SHORT = {"size": 64, "iterations": 20}
LONG = {"size": 64, "iterations": 2000, "preview_every": 5}


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with local_cluster(nodes=2, cpus=1) as c:
        yield c


@pytest.fixture(scope="module")
def ray_driver(cluster: LocalCluster) -> Iterator[object]:
    """This test process as a second driver, to see the cluster's free resources."""
    import ray

    ray.init(address=cluster.address, log_to_driver=False)
    yield ray
    ray.shutdown()


@contextmanager
def head(data_dir: Path, address: str) -> Iterator[subprocess.Popen]:
    """The studio's worker dispatching to the cluster, in a process of its own."""
    log = open(data_dir.parent / "head.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "worker", "--data", str(data_dir), "work", "--ray", address],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)
        log.close()


def node_of(run: Run) -> str:
    """The node id a cluster run records ("ray@host:pid on node 1a2b3c4d at 127.0.0.1 (host), cpu")."""
    assert run.worker and " on node " in run.worker, run.worker
    return run.worker.split(" on node ")[1].split()[0]


def settled(g: Gallery, ids: list[int], timeout: float) -> list[Run]:
    return wait_for(lambda: (runs := [g.get(i) for i in ids]) and all(
        r.status not in ("queued", "running") for r in runs) and runs, timeout, f"runs {ids} to end")


def free_cpus(ray_driver, expected: float, timeout: float = 20) -> None:
    wait_for(lambda: ray_driver.available_resources().get("CPU", 0) == expected, timeout,
             f"{expected} free CPUs in the cluster")


def integrity_ok(data_dir: Path) -> bool:
    with sqlite3.connect(data_dir / "gallery.db") as conn:
        return conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_jobs_spread_over_both_nodes_at_once_and_match_a_local_run(cluster, data_dir):
    from engine import transfer

    g = Gallery(data_dir)
    ids = [g.submit(tiny_params(seed=seed, **SHORT)) for seed in (1, 2)]
    with head(data_dir, cluster.address):
        runs = settled(g, ids, 180)
    assert [r.status for r in runs] == ["done", "done"], [r.error for r in runs]
    assert len({node_of(r) for r in runs}) == 2
    assert max(r.started for r in runs) < min(r.finished for r in runs), "the two ran one after the other"
    assert all(r.device_used == "cpu" for r in runs)

    local = transfer.run(runs[0].params.with_changes(device="cpu")).image
    remote = Image.open(runs[0].result_path).convert("RGB")
    assert remote.size == local.size
    # Same params and seed; the node's torch uses 1 thread where this process uses 2, so sums
    # may round differently: a level or so of 255, nothing a person could see.
    diff = np.abs(np.asarray(remote, np.int16) - np.asarray(local, np.int16))
    assert diff.mean() < 1.0 and np.percentile(diff, 99) <= 8, (diff.mean(), diff.max())


def test_progress_streams_back_and_cancel_stops_the_remote_task(cluster, ray_driver, data_dir):
    g = Gallery(data_dir)
    rid = g.submit(tiny_params(**LONG))
    with head(data_dir, cluster.address):
        running = wait_for(lambda: (r := g.get(rid)).status == "running" and r.iteration >= 10 and r, 120,
                           "progress of the remote run")
        later = wait_for(lambda: (r := g.get(rid)).iteration > running.iteration and r, 30, "more progress")
        assert later.status == "running" and later.iteration < later.total
        assert g.previews(rid), "no preview came back while it ran"
        assert ray_driver.available_resources().get("CPU", 0) == 1.0  # one node busy with it

        g.request_cancel(rid)
        cancelled = wait_for(lambda: (r := g.get(rid)).status == "cancelled" and r, 30, "the run cancelled")
        assert cancelled.iteration < cancelled.total
        free_cpus(ray_driver, 2.0)  # the task itself stopped, not just the record


def task_pids() -> list[int]:
    """The Ray worker processes running a job now (Ray titles them after the task)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if cmdline.read_bytes().startswith(b"ray::run_on_node"):
                found.append(int(cmdline.parent.name))
        except OSError:
            continue  # ended meanwhile
    return found


def test_a_cancel_reaches_a_job_that_sends_nothing(cluster, ray_driver, data_dir, monkeypatch):
    # A 1024 px job on a 1-CPU node computes its targets for seconds and its first iteration for
    # as long again, sending nothing meanwhile. The head passes the cancel on without waiting for
    # a message, and the engine looks for it within its passes through the network.
    monkeypatch.setenv(STOP_ENV, "30")
    g = Gallery(data_dir)
    rid = g.submit(tiny_params(size=1024, iterations=50, multiscale=False))
    with head(data_dir, cluster.address):
        wait_for(lambda: " on node " in (g.get(rid).worker or ""), 120, "the job to start on a node")
        asked = time.monotonic()
        g.request_cancel(rid)
        cancelled = wait_for(lambda: (r := g.get(rid)).status == "cancelled" and r, 60, "the run cancelled")
        took = time.monotonic() - asked
        assert cancelled.iteration == 0  # still setting up: no progress ever came
        free_cpus(ray_driver, 2.0)
    # It stopped by itself, before the head's kill (STUDIO_RAY_STOP_S, 30 s) was due: under 10 s on
    # a quiet machine, 18 s once in a whole make test.
    assert "killing its task" not in (data_dir.parent / "head.log").read_text()
    assert took < 30, took


def test_a_frozen_job_is_killed_and_then_recorded_as_cancelled(cluster, ray_driver, data_dir, monkeypatch):
    # A frozen node: the task's process is stopped (SIGSTOP), so it answers neither the cancel nor
    # the kill that follows STUDIO_RAY_STOP_S (1 s here). One more STUDIO_RAY_STOP_S later the
    # head records the run as cancelled all the same and goes on.
    monkeypatch.setenv(STOP_ENV, "1")
    g = Gallery(data_dir)
    rid = g.submit(tiny_params(**LONG))
    with head(data_dir, cluster.address):
        wait_for(lambda: g.get(rid).iteration > 0, 120, "the remote run under way")
        [pid] = task_pids()
        os.kill(pid, signal.SIGSTOP)
        try:
            asked = time.monotonic()
            g.request_cancel(rid)
            wait_for(lambda: g.get(rid).status == "cancelled", 60, "the run cancelled")
            took = time.monotonic() - asked
            after = g.submit(tiny_params(**SHORT))  # the head goes on serving, on the other node
            assert settled(g, [after], 120)[0].status == "done"
        finally:
            os.kill(pid, signal.SIGKILL)  # the frozen process, which Ray could not end
        free_cpus(ray_driver, 2.0)
    log = (data_dir.parent / "head.log").read_text()
    assert f"run {rid} did not stop within 1 s of its cancel; killing its task" in log
    assert f"run {rid}: its task has not ended 1 s after the kill; recorded as stopped" in log
    assert g.get(rid).status == "cancelled" and integrity_ok(data_dir)
    assert took < 10, took


def test_a_node_lost_mid_job_interrupts_its_run_and_the_rest_go_on(cluster, ray_driver, data_dir):
    extra = cluster.add_node(cpus=1)
    g = Gallery(data_dir)
    ids = [g.submit(tiny_params(seed=seed, **LONG)) for seed in (1, 2, 3)]
    with head(data_dir, cluster.address):
        runs = wait_for(lambda: (rs := [g.get(i) for i in ids]) and all(
            r.status == "running" and r.iteration > 0 for r in rs) and rs, 180, "all three running")
        victim = next(r for r in runs if extra.node_id.startswith(node_of(r)))
        cluster.remove_node(extra)
        lost = wait_for(lambda: (r := g.get(victim.id)).status == "interrupted" and r, 60, "the lost run interrupted")
        assert "cluster lost this run" in lost.error
        assert [g.get(r.id).status for r in runs if r.id != victim.id] == ["running", "running"]
        requeued = g.requeue(victim.id)
        for rid in (*ids, requeued):
            g.request_cancel(rid)
        settled(g, [*ids, requeued], 60)
        after = g.submit(tiny_params(**SHORT))  # the head and the nodes left keep serving
        assert settled(g, [after], 120)[0].status == "done"
    assert integrity_ok(data_dir)
    free_cpus(ray_driver, 2.0)


def test_a_killed_head_leaves_its_remote_run_interrupted_not_running_nor_done(cluster, ray_driver, data_dir):
    g = Gallery(data_dir)
    rid = g.submit(tiny_params(**LONG))
    with head(data_dir, cluster.address) as proc:
        wait_for(lambda: g.get(rid).iteration > 0, 120, "the remote run under way")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    free_cpus(ray_driver, 2.0)  # Ray ends the tasks of a driver that died: nothing runs on unseen
    assert g.get(rid).status == "running"  # until a worker looks, as after a crash of the app
    with head(data_dir, cluster.address):
        interrupted = wait_for(lambda: (r := g.get(rid)).status == "interrupted" and r, 60, "recovery")
    assert "stopped before the run finished" in interrupted.error
    assert integrity_ok(data_dir)


def test_no_cluster_at_the_address_is_one_clear_line(data_dir):
    address = f"127.0.0.1:{free_port()}"
    done = subprocess.run([sys.executable, "-m", "worker", "--data", str(data_dir), "work", "--ray", address],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: No Ray cluster reachable at {address} ([Errno 111] Connection refused). Start one with "
        f"`ray start --head` (README: \"A Ray cluster\"), or unset STUDIO_RAY to run jobs on this machine."]


def test_a_cluster_that_goes_away_leaves_nothing_running_and_the_sidebar_says_why(data_dir, monkeypatch):
    from worker.supervisor import Supervisor

    g = Gallery(data_dir)
    rid = g.submit(tiny_params(**LONG))
    with local_cluster(nodes=1, cpus=1) as gone:
        address = gone.address
        monkeypatch.setenv("STUDIO_RAY", address)
        # How long a driver waits for a vanished cluster before it exits (Ray's default: 60 s).
        monkeypatch.setenv("RAY_gcs_rpc_server_reconnect_timeout_s", "5")
        supervisor = Supervisor(data_dir).start()  # as the app starts it
        try:
            assert supervisor.devices == ["ray"]
            wait_for(lambda: g.get(rid).iteration > 0, 120, "the remote run under way")
            gone.shutdown()
            interrupted = wait_for(lambda: (r := g.get(rid)).status == "interrupted" and r, 60,
                                   "the run interrupted")
            assert interrupted.finished is not None
            state = wait_for(lambda: (s := supervisor.states()[0]).last_error and "No Ray cluster reachable" in
                             s.last_error and s, 60, "the worker saying the cluster is gone")
            assert address in state.last_error
        finally:
            supervisor.stop()
    assert integrity_ok(data_dir)


def test_a_clip_runs_on_the_cluster_keeping_each_frame_on_the_head_and_resumes_there(cluster, ray_driver,
                                                                                     data_dir, tmp_path):
    from engine.clips import read_clip, write_gif
    from support.images import pan

    gif = write_gif(pan(4), tmp_path / "pan.gif")
    g = Gallery(data_dir)
    first = g.submit(tiny_params(content=gif, size=64, iterations=10, frame_iterations=60))
    with head(data_dir, cluster.address) as proc:
        wait_for(lambda: len(g.frames(first)) >= 2, 180, "two frames kept on the head", interval=0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    had = len(g.frames(first))
    assert 2 <= had < 4
    free_cpus(ray_driver, 2.0)
    assert g.recover_interrupted() == [first]
    again = g.requeue(first)
    seen: set[int] = set()
    with head(data_dir, cluster.address):
        wait_for(lambda: seen.add(g.get(again).frame) or g.get(again).status not in ("queued", "running"), 180,
                 "the resumed run", interval=0.05)
    assert g.get(again).status == "done", g.get(again).error
    assert min(seen - {0}) > had, seen  # the frames kept on the head were not computed again
    run = g.get(again)
    assert len(read_clip(run.animation_path).frames) == 4 and node_of(run)
    assert integrity_ok(data_dir)
