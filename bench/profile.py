"""`python -m bench.profile`: where an iteration's time goes, by operator, under torch.profiler.

Runs a few warm-up iterations, then profiles --steps more (single scale, L-BFGS), and prints the
operators that took the most device time (CPU time on a machine without CUDA). Read it next to
`python -m bench.accel`: the convolutions are the floor, and everything else is what an
iteration costs beyond it (Grams, losses, the optimizer's own arithmetic, launches).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from bench.measure import Pair, base_params
from engine.accel import Accel, default_accel
from engine.transfer import Progress, pick_device, run
from harness.paths import TEST_IMAGES


def main(argv: list[str] | None = None) -> int:
    cuda = torch.cuda.is_available()
    ap = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    ap.add_argument("--size", type=int, default=512 if cuda else 128)
    ap.add_argument("--steps", type=int, default=20 if cuda else 3, help="iterations profiled")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--accel", help="an engine.accel label (default: the engine's default on this device)")
    ap.add_argument("--rows", type=int, default=25)
    ap.add_argument("--images", type=Path, default=TEST_IMAGES)
    args = ap.parse_args(argv)
    device = pick_device("cuda" if cuda else "cpu")
    accel = Accel.parse(args.accel) if args.accel else default_accel(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    profiler = profile(activities=activities)

    def on_progress(pr: Progress) -> None:
        # Started and stopped between iterations, so set-up and warm-up stay out of the figures.
        if pr.iteration == args.warmup:
            profiler.start()
        elif pr.iteration == args.warmup + args.steps:
            if cuda:
                torch.cuda.synchronize()
            profiler.stop()

    p = base_params(args.size, device.type, Pair.in_folder(args.images), multiscale=False, preview_every=0,
                    iterations=args.warmup + args.steps)
    run(p, on_progress=on_progress, accel=accel)
    print(f"{args.size} px on {device.type}, {accel.label()}, {args.steps} L-BFGS iterations profiled "
          f"after {args.warmup} (times are totals over them)")
    sort = "device_time_total" if cuda else "self_cpu_time_total"
    print(profiler.key_averages().table(sort_by=sort, row_limit=args.rows, max_name_column_width=60))
    return 0


if __name__ == "__main__":
    sys.exit(main())
