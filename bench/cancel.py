"""`python -m bench.cancel`: how long a cancel takes to stop a run on the CPU, where an iteration
at a large size takes seconds to minutes. Measured in one process, both ways.

    python -m bench.cancel [--size 1024] [--after 1.0] [--threads 2]

The same single-scale run (tubingen + starry_night) twice: with the engine's checks inside an
iteration (after each convolution, forward and backward; the default), and with them turned off,
so that it asks only between iterations and set-up passes. The cancel is asked `--after` seconds
into iteration 2. Figures, not assertions.
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

from bench.measure import base_params
from engine import transfer
from engine.params import Params


def stop_seconds(p: Params, after: float, within_iterations: bool) -> float:
    """Seconds from the cancel being asked to the engine raising Cancelled."""
    asked_at: list[float] = []

    def progress(_: transfer.Progress) -> None:
        if not asked_at:
            asked_at.append(time.monotonic() + after)

    every = transfer.ASK_WITHIN_ITERATION_S if within_iterations else float("inf")
    saved, transfer.ASK_WITHIN_ITERATION_S = transfer.ASK_WITHIN_ITERATION_S, every
    try:
        transfer.run(p, on_progress=progress, should_cancel=lambda: bool(asked_at) and time.monotonic() >= asked_at[0])
    except transfer.Cancelled:
        return time.monotonic() - asked_at[0]
    finally:
        transfer.ASK_WITHIN_ITERATION_S = saved
    raise RuntimeError("the run ended before the cancel: give it more iterations or a smaller --after")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cancel", description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--after", type=float, default=1.0, help="seconds into iteration 2")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    p = base_params(args.size, "cpu", iterations=5, multiscale=False, preview_every=0)
    print(f"| {args.size} px on the cpu, {args.threads} threads, cancel {args.after:g} s into iteration 2 "
          "| stopped after (s) |\n| --- | ---: |")
    for label, within in (("between iterations only", False), ("within iterations too (default)", True)):
        print(f"| {label} | {stop_seconds(p, args.after, within):.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
