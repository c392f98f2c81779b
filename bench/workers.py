"""`python -m bench.workers`: how many jobs a minute one worker, several workers, and a Ray
cluster on this machine get through, and what a job pays on its way in and out.

    python -m bench.workers [--jobs 8] [--preset draft] [--size 128] [--iterations 50]
                            [--layouts 1x2 2x1 ray2x1] [--one-by-one]

A layout WxT is W `python -m worker work` processes on the CPU under the app's supervisor, each
with T torch threads; rayNxT is one worker sending every job to a real Ray cluster of N nodes of
T CPUs each on 127.0.0.1 (harness/ray_cluster.py), a job per node at a time; a device name
(`cuda:0`, `auto`) is one worker on that device. The same `--jobs` jobs of the preset
(tubingen + starry_night, distinct seeds) are queued at once over a fresh data folder, or with
--one-by-one each once the one before is saved (what one person waiting alone sees), and timed
from the first submit to the last done, after a warm-up job per slot (2 iterations a scale:
loading torch and the weights, and the device's first meeting with each scale's shapes, are
not what is measured). Per job, from the gallery polled every 50 ms: claim → first progress
(the cluster's dispatch, inputs and task start, plus the engine's own set-up, which a local
worker pays too), claim → first preview in the gallery, last iteration → saved (the result's
way back and the save), submit → saved (the result's files written and its row "done"), and
the whole claim → saved less the engine's own time (what the run paid outside the engine).
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
from pathlib import Path

from bench.finished import Finished
from engine.params import PRESETS, preset
from gallery import Gallery
from harness.paths import TEST_IMAGES
from harness.waiting import wait_for
from worker.cluster import CPUS_ENV, RAY_ENV
from worker.supervisor import Supervisor

POLL_S = 0.05


@dataclass
class Layout:
    workers: int  # worker processes, or the cluster's nodes
    threads: int  # torch threads of each, or CPUs of each node
    ray: bool = False
    device: str = "cpu"  # what the local workers run on, and what the jobs ask for

    @property
    def label(self) -> str:
        if self.ray:
            return f"Ray: {self.workers} nodes × {self.threads} CPU"
        if self.device != "cpu":
            return f"1 worker on {self.device}"
        return f"{self.workers} worker{'s' * (self.workers > 1)} × {self.threads} threads"


def layout(text: str) -> Layout:
    if text == "auto" or text.startswith("cuda"):
        return Layout(1, os.cpu_count() or 1, device=text)
    ray = text.startswith("ray")
    workers, _, threads = text.removeprefix("ray").partition("x")
    return Layout(int(workers), int(threads), ray)


@dataclass
class Timeline:
    """When the bench saw each job reach its milestones (time.time())."""

    first_progress: dict[int, float] = field(default_factory=dict)
    first_preview: dict[int, float] = field(default_factory=dict)
    last_iteration: dict[int, float] = field(default_factory=dict)
    saved: dict[int, float] = field(default_factory=dict)

    def watch(self, g: Gallery, ids: list[int]) -> bool:
        """Notes the milestones each of `ids` has reached by now; True once every one is saved."""
        for run in (g.get(i) for i in ids):
            now = time.time()
            if run.status == "running" and run.iteration > 0:
                self.first_progress.setdefault(run.id, now)
            if run.preview_path is not None:
                self.first_preview.setdefault(run.id, now)
            if run.iteration >= run.total > 0:
                self.last_iteration.setdefault(run.id, now)
            if run.status not in ("queued", "running"):
                self.saved.setdefault(run.id, now)
        return all(i in self.saved for i in ids)


@dataclass
class Figures:
    wall: float
    median_job: float
    to_first_progress: float
    to_first_preview: float | None  # None: the jobs made no previews
    result_back: float
    submit_to_saved: float
    outside_engine: float


def time_layout(lay: Layout, jobs: int, preset_name: str, changes: dict, images: Path = TEST_IMAGES,
                one_by_one: bool = False) -> Figures:
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp, Gallery(tmp) as g, ExitStack() as stack:
        photo, painting = images / "content" / "tubingen.jpg", images / "style" / "starry_night.jpg"
        content = g.add_input(photo.read_bytes(), photo.name, kind="content")
        style = g.add_input(painting.read_bytes(), painting.name, kind="style")
        params = preset(preset_name, content=str(g.input_path(content.sha256)),
                        styles=(str(g.input_path(style.sha256)),), device=lay.device, **changes)
        if lay.ray:
            from harness.ray_cluster import local_cluster

            cluster = stack.enter_context(local_cluster(nodes=lay.workers, cpus=lay.threads))
            os.environ.update({RAY_ENV: cluster.address, CPUS_ENV: str(lay.threads)})
            stack.callback(lambda: [os.environ.pop(k, None) for k in (RAY_ENV, CPUS_ENV)])
            supervisor = Supervisor(tmp, ["ray"]).start()
        else:
            supervisor = Supervisor(tmp, [lay.device] * lay.workers, threads=lay.threads).start()
        stack.callback(supervisor.stop)
        warm = [g.submit(params.with_changes(iterations=2, seed=1000 + i)) for i in range(lay.workers)]
        wait_for(lambda: all(g.get(r).status == "done" for r in warm), 600, "the warm-up")
        timeline = Timeline()
        t0 = time.monotonic()
        ids: list[int] = []
        for batch in ([[i] for i in range(jobs)] if one_by_one else [list(range(jobs))]):
            ids += [g.submit(params.with_changes(seed=i)) for i in batch]
            wait_for(lambda: timeline.watch(g, ids), 3600, "the jobs", POLL_S)
        wall = time.monotonic() - t0
        runs = [g.get(r) for r in ids]
        failed = [r.id for r in runs if r.status != "done"]
        if failed:
            raise RuntimeError(f"runs {failed} did not finish: {runs[0].error}")
        done = [Finished.of(r) for r in runs]
        return Figures(
            wall, statistics.median(d.duration for d in done),
            statistics.median(timeline.first_progress[d.run.id] - d.started.timestamp() for d in done),
            statistics.median(timeline.first_preview[d.run.id] - d.started.timestamp() for d in done)
            if len(timeline.first_preview) == len(done) else None,
            statistics.median(timeline.saved[r.id] - timeline.last_iteration[r.id] for r in runs),
            statistics.median(timeline.saved[r.id] - r.created.timestamp() for r in runs),
            statistics.median((d.finished - d.started).total_seconds() - d.run.timings["total"] for d in done))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.workers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--preset", choices=PRESETS, default="draft")
    parser.add_argument("--size", type=int, help="instead of the preset's (draft: 128 here)")
    parser.add_argument("--iterations", type=int, help="a scale's, instead of the preset's (draft: 50 here)")
    parser.add_argument("--one-by-one", action="store_true", help="each job submitted once the one before is saved")
    parser.add_argument("--images", type=Path, default=TEST_IMAGES,
                        help="folder with content/tubingen.jpg and style/starry_night.jpg")
    cores = os.cpu_count() or 1
    half = max(1, cores // 2)
    parser.add_argument("--layouts", type=layout, nargs="+",
                        default=[Layout(1, cores), Layout(2, half), Layout(2, half, ray=True)], metavar="WxT",
                        help="workers x threads each, rayNxT: a cluster of N nodes of T CPUs, or a device "
                             "(cuda:0, auto) for one worker there (default: 1 worker with every core, 2 with "
                             "half, a 2-node cluster of half)")
    args = parser.parse_args(argv)
    given = {k: v for k, v in (("size", args.size), ("iterations", args.iterations)) if v is not None}
    # draft: small enough for a 2-core CPU
    changes = {**({"size": 128, "iterations": 50} if args.preset == "draft" else {}), **given}
    shown = preset(args.preset, **changes)
    print(f"{args.jobs} {args.preset} jobs ({shown.size} px, scales {' → '.join(map(str, shown.scale_sizes()))}, "
          f"{shown.iterations} iterations a scale, a preview every {shown.preview_every}), "
          f"{'one by one' if args.one_by_one else 'queued at once'}; {cores} cores.\n")
    print("| layout | all jobs (s) | jobs per minute | median job (s) | claim → first progress (s) "
          "| claim → first preview (s) | last iteration → saved (s) | submit → saved (s) "
          "| claim → saved, less the engine's own time (s) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for lay in args.layouts:
        f = time_layout(lay, args.jobs, args.preset, changes, args.images, args.one_by_one)
        preview = "" if f.to_first_preview is None else f"{f.to_first_preview:.2f}"
        print(f"| {lay.label} | {f.wall:.1f} | {args.jobs / f.wall * 60:.1f} | {f.median_job:.1f} "
              f"| {f.to_first_progress:.2f} | {preview} | {f.result_back:.2f} | {f.submit_to_saved:.2f} "
              f"| {f.outside_engine:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
