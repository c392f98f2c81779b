"""`python -m bench.workers`: how many jobs a minute one worker and several workers get through.

    python -m bench.workers [--jobs 8] [--size 128] [--iterations 50] [--layouts 1x2 2x1]

Each layout is WORKERSxTHREADS: the app's supervisor runs that many `python -m worker work`
processes on the CPU, each with that many torch threads, over a fresh data folder; the same
`--jobs` small jobs (tubingen + starry_night, distinct seeds) are queued at once and timed from
the first submit to the last done. A warm-up job per worker runs first (loading torch and the
weights is not what is measured). Figures, not assertions.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.watchers import CONTENT, STYLE, wait_until
from engine.params import preset
from gallery import Gallery
from worker.supervisor import Supervisor


def layout(text: str) -> tuple[int, int]:
    workers, _, threads = text.partition("x")
    return int(workers), int(threads)


def time_layout(workers: int, threads: int, jobs: int, size: int, iterations: int) -> tuple[float, float]:
    """(seconds for `jobs` jobs, median job duration) with `workers` CPU workers of `threads`."""
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp, Gallery(tmp) as g:
        content = g.add_input(CONTENT.read_bytes(), CONTENT.name, kind="content")
        style = g.add_input(STYLE.read_bytes(), STYLE.name, kind="style")
        params = preset("draft", content=str(g.input_path(content.sha256)), styles=(str(g.input_path(style.sha256)),),
                        size=size, iterations=iterations, device="cpu")
        supervisor = Supervisor(tmp, ["cpu"] * workers, threads=threads).start()
        try:
            warm = [g.submit(params.with_changes(iterations=2, seed=1000 + i)) for i in range(workers)]
            wait_until(lambda: all(g.get(r).status == "done" for r in warm), 600, "the warm-up")
            t0 = time.monotonic()
            ids = [g.submit(params.with_changes(seed=i)) for i in range(jobs)]
            wait_until(lambda: all(g.get(r).status not in ("queued", "running") for r in ids), 3600, "the jobs")
            wall = time.monotonic() - t0
            runs = [g.get(r) for r in ids]
            failed = [r.id for r in runs if r.status != "done"]
            if failed:
                raise RuntimeError(f"runs {failed} did not finish: {runs[0].error}")
            return wall, statistics.median(r.duration for r in runs)
        finally:
            supervisor.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.workers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=50)
    cores = os.cpu_count() or 1
    parser.add_argument("--layouts", type=layout, nargs="+", default=[(1, cores), (2, max(1, cores // 2))],
                        metavar="WxT", help="workers x threads each (default: 1 with every core, 2 with half)")
    args = parser.parse_args(argv)
    print(f"{args.jobs} draft jobs ({args.size} px, {args.iterations} iterations, single scale) on the CPU, "
          f"{cores} cores.\n")
    print("| workers × threads | all jobs (s) | jobs per minute | median job (s) |")
    print("| --- | ---: | ---: | ---: |")
    for workers, threads in args.layouts:
        wall, median = time_layout(workers, threads, args.jobs, args.size, args.iterations)
        print(f"| {workers} × {threads} | {wall:.1f} | {args.jobs / wall * 60:.1f} | {median:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
