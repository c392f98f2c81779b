"""`python -m bench.workers`: how many jobs a minute one worker, several workers, and a Ray
cluster on this machine get through, and what a job pays on its way in and out.

    python -m bench.workers [--jobs 8] [--size 128] [--iterations 50] [--layouts 1x2 2x1 ray2x1]

A layout WxT is W `python -m worker work` processes on the CPU under the app's supervisor, each
with T torch threads; rayNxT is one worker sending every job to a real Ray cluster of N nodes of
T CPUs each on 127.0.0.1 (bench/ray_cluster.py), a job per node at a time. The same `--jobs`
small jobs (tubingen + starry_night, distinct seeds) are queued at once over a fresh data folder
and timed from the first submit to the last done, after a warm-up job per slot (loading torch
and the weights is not what is measured). Per job, from the gallery polled every 50 ms: claim →
first progress (the cluster's dispatch, inputs and task start, plus the engine's own set-up,
which a local worker pays too), last iteration → saved (the result's way back and the save),
and the whole claim → saved less the engine's own time (what the run paid outside the engine).
Figures, not assertions.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field

from bench.watchers import CONTENT, STYLE, wait_until
from engine.params import preset
from gallery import Gallery
from worker.cluster import CPUS_ENV, RAY_ENV
from worker.supervisor import Supervisor

POLL_S = 0.05


@dataclass
class Layout:
    workers: int  # worker processes, or the cluster's nodes
    threads: int  # torch threads of each, or CPUs of each node
    ray: bool = False

    @property
    def label(self) -> str:
        return (f"Ray: {self.workers} nodes × {self.threads} CPU" if self.ray
                else f"{self.workers} worker{'s' * (self.workers > 1)} × {self.threads} threads")


def layout(text: str) -> Layout:
    ray = text.startswith("ray")
    workers, _, threads = text.removeprefix("ray").partition("x")
    return Layout(int(workers), int(threads), ray)


@dataclass
class Timeline:
    """When the bench saw each job reach its milestones (time.time())."""

    first_progress: dict[int, float] = field(default_factory=dict)
    last_iteration: dict[int, float] = field(default_factory=dict)
    saved: dict[int, float] = field(default_factory=dict)

    def watch(self, g: Gallery, ids: list[int]) -> None:
        for run in (g.get(i) for i in ids):
            now = time.time()
            if run.status == "running" and run.iteration > 0:
                self.first_progress.setdefault(run.id, now)
            if run.iteration >= run.total > 0:
                self.last_iteration.setdefault(run.id, now)
            if run.status not in ("queued", "running"):
                self.saved.setdefault(run.id, now)


@dataclass
class Figures:
    wall: float
    median_job: float
    to_first_progress: float
    result_back: float
    outside_engine: float


def time_layout(lay: Layout, jobs: int, size: int, iterations: int) -> Figures:
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp, Gallery(tmp) as g, ExitStack() as stack:
        content = g.add_input(CONTENT.read_bytes(), CONTENT.name, kind="content")
        style = g.add_input(STYLE.read_bytes(), STYLE.name, kind="style")
        params = preset("draft", content=str(g.input_path(content.sha256)), styles=(str(g.input_path(style.sha256)),),
                        size=size, iterations=iterations, device="cpu")
        if lay.ray:
            from bench.ray_cluster import local_cluster

            cluster = stack.enter_context(local_cluster(nodes=lay.workers, cpus=lay.threads))
            os.environ.update({RAY_ENV: cluster.address, CPUS_ENV: str(lay.threads)})
            stack.callback(lambda: [os.environ.pop(k, None) for k in (RAY_ENV, CPUS_ENV)])
            supervisor = Supervisor(tmp, ["ray"]).start()
        else:
            supervisor = Supervisor(tmp, ["cpu"] * lay.workers, threads=lay.threads).start()
        stack.callback(supervisor.stop)
        warm = [g.submit(params.with_changes(iterations=2, seed=1000 + i)) for i in range(lay.workers)]
        wait_until(lambda: all(g.get(r).status == "done" for r in warm), 600, "the warm-up")
        timeline = Timeline()
        t0 = time.monotonic()
        ids = [g.submit(params.with_changes(seed=i)) for i in range(jobs)]
        wait_until(lambda: timeline.watch(g, ids) or len(timeline.saved) == jobs, 3600, "the jobs", POLL_S)
        wall = time.monotonic() - t0
        runs = [g.get(r) for r in ids]
        failed = [r.id for r in runs if r.status != "done"]
        if failed:
            raise RuntimeError(f"runs {failed} did not finish: {runs[0].error}")
        return Figures(
            wall, statistics.median(r.duration for r in runs),
            statistics.median(timeline.first_progress[r.id] - r.started.timestamp() for r in runs),
            statistics.median(timeline.saved[r.id] - timeline.last_iteration[r.id] for r in runs),
            statistics.median((r.finished - r.started).total_seconds() - r.timings["total"] for r in runs))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.workers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=50)
    cores = os.cpu_count() or 1
    half = max(1, cores // 2)
    parser.add_argument("--layouts", type=layout, nargs="+",
                        default=[Layout(1, cores), Layout(2, half), Layout(2, half, ray=True)], metavar="WxT",
                        help="workers x threads each, or rayNxT: a cluster of N nodes of T CPUs "
                             "(default: 1 worker with every core, 2 with half, a 2-node cluster of half)")
    args = parser.parse_args(argv)
    print(f"{args.jobs} draft jobs ({args.size} px, {args.iterations} iterations, single scale) on the CPU, "
          f"{cores} cores.\n")
    print("| layout | all jobs (s) | jobs per minute | median job (s) | claim → first progress (s) "
          "| last iteration → saved (s) | claim → saved, less the engine's own time (s) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for lay in args.layouts:
        f = time_layout(lay, args.jobs, args.size, args.iterations)
        print(f"| {lay.label} | {f.wall:.1f} | {args.jobs / f.wall * 60:.1f} | {f.median_job:.1f} "
              f"| {f.to_first_progress:.2f} | {f.result_back:.2f} | {f.outside_engine:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
