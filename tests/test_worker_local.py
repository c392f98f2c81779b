"""The worker: claiming, running, recording; most tests use a stand-in engine so they test the
queue, not the optimisation (tests/test_worker_engine.py runs the real one)."""
from __future__ import annotations

import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from gallery import Gallery
from harness.paths import ROOT
from harness.waiting import wait_for
from support.fake_engine import FakeEngine, settled, statuses
from support.runs import dead_pid, tiny_params
from worker import Worker


@pytest.fixture
def workers():
    started: list[Worker] = []
    yield started
    for w in started:
        w.stop(timeout=10)


def start(workers: list[Worker], data_dir: Path, engine, device: str = "auto", **kwargs) -> Worker:
    w = Worker(data_dir, device, engine=engine, poll_interval=0.05, **kwargs).start()
    workers.append(w)
    return w


@pytest.mark.parametrize("n_workers", [1, 2])
def test_forty_jobs_from_eight_threads_each_run_once(data_dir: Path, workers, n_workers: int) -> None:
    engine = FakeEngine(step_s=0.005)
    for _ in range(n_workers):
        start(workers, data_dir, engine)

    def submit_five(t: int) -> None:
        with Gallery(data_dir) as mine:
            for i in range(5):
                mine.submit(tiny_params(seed=t * 5 + i, preview_every=1))

    threads = [threading.Thread(target=submit_five, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with Gallery(data_dir) as g:
        wait_for(lambda: settled(g, 40), 60, "40 results")
        assert statuses(g) == Counter(done=40)
        runs = g.list_runs(limit=100)
        assert sorted(r.params.seed for r in runs) == list(range(40))
        assert all(r.result_path.is_file() and r.thumb_path.is_file() for r in runs)
    seeds = Counter(seed for _, seed in engine.calls)
    assert len(seeds) == 40 and set(seeds.values()) == {1}  # none lost, none twice
    assert len({thread for thread, _ in engine.calls}) == n_workers  # they did compete
    assert all(w.alive for w in workers)


def test_cancel_stops_within_one_iteration(data_dir: Path, workers) -> None:
    engine = FakeEngine()
    engine.pause_at = 3
    start(workers, data_dir, engine)
    with Gallery(data_dir) as g:
        rid = g.submit(tiny_params(iterations=100))
        assert engine.paused.wait(20)
        assert g.request_cancel(rid) == "running"
        engine.resume.set()
        wait_for(lambda: g.get(rid).status == "cancelled", 10, "cancelled")
        # Cancelled during iteration 3: the check before iteration 4 stopped it, and the run
        # records where it stopped even though progress writes are throttled.
        assert engine.last_step == 3
        assert g.get(rid).iteration == 3
        nxt = g.submit(tiny_params(seed=1))
        wait_for(lambda: g.get(nxt).status == "done", 10, "the next job")


def test_failures_never_stop_the_worker(data_dir: Path, workers) -> None:
    from engine.images import ImageError
    from engine.params import ParamsError

    engine = FakeEngine(fail_seeds={
        1: FakeEngine.OutOfMemory("Out of memory at 4096 px on cuda; try a smaller size (e.g. 2048 px)."),
        2: ImageError("The image file is truncated or damaged."),
        3: ParamsError({"size": "must be at most 4096"}),
        4: ZeroDivisionError("division by zero"),
    })
    w = start(workers, data_dir, engine)
    with Gallery(data_dir) as g:
        ids = [g.submit(tiny_params(seed=s)) for s in (1, 2, 3, 4, 5)]
        wait_for(lambda: settled(g, 5), 20, "five jobs")
        runs = [g.get(i) for i in ids]
        assert [r.status for r in runs] == ["failed"] * 4 + ["done"]
        assert runs[0].error == "Out of memory at 4096 px on cuda; try a smaller size (e.g. 2048 px)."
        assert runs[1].error == "The image file is truncated or damaged."
        assert runs[2].error == "size: must be at most 4096"
        assert runs[3].error == "ZeroDivisionError: division by zero"
    assert w.alive and w.current is None


def test_oversize_job_is_refused_before_it_starts(data_dir: Path, workers) -> None:
    engine = FakeEngine()
    start(workers, data_dir, engine, memory_probe=lambda device: 1_500_000_000)
    with Gallery(data_dir) as g:
        big = g.submit(tiny_params(size=2048, seed=1))
        small = g.submit(tiny_params(size=256, seed=2))
        wait_for(lambda: settled(g, 2), 20, "both jobs")
        refused = g.get(big)
        assert refused.status == "failed"
        assert refused.error.startswith("Not enough memory: this run needs about ")
        # Even in the smallest tiles: what is left is the image, L-BFGS's history and, on the CPU,
        # the Winograd kernels (about 400 MB), which at 768 px still fit.
        assert "even in tiles, cpu has 1.5 GB free; the largest size that would fit is 768 px." in refused.error
        assert g.get(small).status == "done"
    assert [seed for _, seed in engine.calls] == [2]  # the engine never saw the big one


def test_device_workers_take_their_jobs(data_dir: Path, workers) -> None:
    engine = FakeEngine()
    with Gallery(data_dir) as g:
        cuda = g.submit(tiny_params(seed=1).with_changes(device="cuda"))
        cpu = g.submit(tiny_params(seed=2))
        auto = g.submit(tiny_params(seed=3).with_changes(device="auto"))
        start(workers, data_dir, engine, device="cpu", memory_probe=lambda d: None)
        wait_for(lambda: settled(g, 2), 20, "cpu and auto jobs")
        assert g.get(cpu).status == g.get(auto).status == "done"
        assert g.get(cuda).status == "queued"  # waits for a cuda worker
        assert g.get(auto).params.device == "auto"  # as asked; it ran on the worker's device


def test_stop_interrupts_the_running_job(data_dir: Path, workers) -> None:
    engine = FakeEngine(step_s=0.02)
    w = start(workers, data_dir, engine)
    with Gallery(data_dir) as g:
        rid = g.submit(tiny_params(iterations=10_000))
        wait_for(lambda: g.get(rid).iteration > 0, 20, "progress")
        w.stop(timeout=10)
        assert not w.alive
        run = g.get(rid)
        assert run.status == "interrupted" and "stopped" in run.error
        assert g.get(g.requeue(rid)).status == "queued"


def test_worker_recovers_runs_of_dead_processes_on_start(data_dir: Path, workers) -> None:
    with Gallery(data_dir) as g:
        rid = g.submit(tiny_params())
        g.claim(rid, "gone")
        g.db.execute("UPDATE runs SET worker_pid = ? WHERE id = ?", [dead_pid(), rid])
        start(workers, data_dir, FakeEngine())
        wait_for(lambda: g.get(rid).status == "interrupted", 10, "recovery")


def test_importing_worker_and_gallery_does_not_import_torch_nor_ray() -> None:
    code = ("import sys, worker, worker.supervisor, worker.cluster, worker.cli, gallery, gallery.cli, "
            "gallery.exchange, engine.memory; sys.exit('torch' in sys.modules or 'ray' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_each_gpu_worker_takes_its_own_jobs_and_any_gpus(data_dir: Path, workers) -> None:
    # Two GPUs' workers, faked where CUDA is absent: only the claiming and routing are tested
    # (the memory probe says nothing without CUDA, and the engine is the stand-in).
    with Gallery(data_dir) as g:
        asked = {d: g.submit(tiny_params(device=d)) for d in ("cuda:1", "cuda:0", "cpu")}
        anywhere = [g.submit(tiny_params(device=d, seed=i)) for i, d in enumerate(["cuda", "auto"] * 3)]
        engine = FakeEngine(step_s=0.02)
        for device in ("cuda:0", "cuda:1"):
            start(workers, data_dir, engine, device, memory_probe=lambda device: None)
        wait_for(lambda: all(g.get(rid).status == "done" for rid in [asked["cuda:1"], asked["cuda:0"], *anywhere]),
                 30, "the GPU jobs")
        assert g.get(asked["cuda:1"]).worker.startswith("cuda:1@")
        assert g.get(asked["cuda:0"]).worker.startswith("cuda:0@")
        assert {g.get(rid).worker.split("@")[0] for rid in anywhere} == {"cuda:0", "cuda:1"}
        assert g.get(asked["cpu"]).status == "queued"  # no CPU worker here: it waits for one


def test_a_plain_cuda_worker_is_gpu_zeros(data_dir: Path) -> None:
    assert Worker(data_dir, "cuda").claimable() == ["auto", "cuda", "cuda:0"]
    assert Worker(data_dir, "cuda:2").claimable() == ["auto", "cuda", "cuda:2"]
    with pytest.raises(ValueError, match="cuda:N"):
        Worker(data_dir, "gpu1")


def test_a_cluster_has_room_for_a_job_per_gpu_and_per_cpus_per_job() -> None:
    from worker.cluster import CUDA_DEVICES, Slots, claimable, cluster_slots, wants_gpu

    assert cluster_slots({"CPU": 16.0, "GPU": 2.0, "memory": 1e9}, cpus_per_job=4) == Slots(gpu=2, cpu=4)
    assert cluster_slots({"CPU": 3.0}, cpus_per_job=2) == Slots(gpu=0, cpu=1)
    gpus, cpus_only = Slots(gpu=1, cpu=2), Slots(gpu=0, cpu=2)
    # "auto" jobs go to a GPU when the cluster has one, else to CPUs.
    assert wants_gpu("auto", gpus) and not wants_gpu("auto", cpus_only) and wants_gpu("cuda:1", cpus_only)
    assert claimable(gpus, gpu_busy=0, cpu_busy=0) == [*CUDA_DEVICES, "auto", "cpu"]
    assert claimable(gpus, gpu_busy=1, cpu_busy=1) == ["cpu"]
    assert claimable(cpus_only, gpu_busy=0, cpu_busy=1) == ["cpu", "auto"]
    assert claimable(cpus_only, gpu_busy=0, cpu_busy=2) == []


def test_with_studio_ray_the_app_runs_one_worker_that_sends_jobs_to_the_cluster(monkeypatch) -> None:
    from worker.supervisor import default_devices

    monkeypatch.setenv("STUDIO_RAY", "10.0.0.5:6379")
    monkeypatch.setenv("STUDIO_DEVICES", "cuda:0,cuda:1")
    assert default_devices() == ["ray"]
    monkeypatch.delenv("STUDIO_RAY")
    assert default_devices() == ["cuda:0", "cuda:1"]
