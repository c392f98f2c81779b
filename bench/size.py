"""`python -m bench.size`: time per iteration and peak memory at large sizes, against the estimate
that the worker checks a job with before it starts (engine.memory).

    python -m bench.size [--sizes 2048 4096] [--steps 10] [--warmup 3]

For each size, one single-scale L-BFGS run evaluated as the engine does by default, and:
- its time per iteration: the median between progress reports after the first --warmup;
- its peak memory over the whole run, and over its later iterations alone: the first ones hold
  cuDNN's autotuning (on CUDA, workspaces of tens of GB tried and dropped, which a fuller device
  would not have given it) and the CUDA graph's capture. On CUDA, what torch allocated and what
  its caching allocator reserved (what the device's free memory must hold; unused cache is
  emptied first); on the CPU, the resident set's growth over the run (its high-water mark,
  reset through /proc/self/clear_refs);
- engine.memory.estimate_bytes for the same params and content image, and its ratio to the
  later iterations' peak (reserved on CUDA).
Figures, not assertions.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from bench.child import peak_rss_mb, status_mb
from bench.measure import Pair, Report, base_params, sync
from engine.accel import default_accel
from engine.images import fit_within
from engine.memory import estimate_bytes
from engine.transfer import Progress, pick_device, run
from harness.paths import TEST_IMAGES

MB = 2**20


class Peaks:
    """Peak memory of this process on one device since the last reset(), in MB."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def reset(self) -> None:
        if self.cuda:
            sync(torch.device("cuda"))
            torch.cuda.empty_cache()  # cached blocks no tensor uses would count as reserved
            torch.cuda.reset_peak_memory_stats()
        else:
            try:
                Path("/proc/self/clear_refs").write_text("5")  # VmHWM back to the current RSS
            except OSError:
                pass

    def current(self) -> float:
        if self.cuda:
            return torch.cuda.memory_allocated() / MB
        return status_mb("VmRSS") or 0.0

    def peak(self) -> tuple[float, float | None]:
        """(allocated, reserved) on CUDA; (resident set, None) on the CPU."""
        if self.cuda:
            return torch.cuda.max_memory_allocated() / MB, torch.cuda.max_memory_reserved() / MB
        return peak_rss_mb() or 0.0, None


@dataclass
class Measured:
    size: int
    pixels: int
    iteration: float  # seconds
    whole_peak: float  # MB above what was in use before the run: allocated on CUDA, resident on the CPU
    later_peak: float  # the same over the iterations after the warm-up
    later_reserved: float | None  # CUDA: reserved by the allocator over those iterations
    estimate: float  # MB, engine.memory


def measure(size: int, device: torch.device, pair: Pair, steps: int, warmup: int) -> Measured:
    p = base_params(size, device.type, pair, multiscale=False, preview_every=0, iterations=warmup + steps)
    peaks = Peaks(device)
    stamps: list[float] = []
    whole: list[float] = []

    def on_progress(pr: Progress) -> None:
        sync(device)
        stamps.append(time.perf_counter())
        if pr.iteration == warmup:
            whole.append(peaks.peak()[0])
            peaks.reset()

    peaks.reset()
    before = peaks.current()
    run(p, on_progress=on_progress)
    later, reserved = peaks.peak()
    times = [b - a for a, b in zip(stamps[warmup:], stamps[warmup + 1:])]
    w, h = Image.open(pair.content).size
    width, height = fit_within(w, h, size)
    return Measured(size, width * height, statistics.median(times), max(whole[0], later) - before,
                    later - before, None if reserved is None else reserved - before,
                    estimate_bytes(p, (w, h)) / MB)


def main(argv: list[str] | None = None) -> int:
    cuda = torch.cuda.is_available()
    ap = argparse.ArgumentParser(prog="python -m bench.size", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096] if cuda else [128, 256])
    ap.add_argument("--steps", type=int, default=10 if cuda else 3, help="iterations timed after the warm-up")
    ap.add_argument("--warmup", type=int, default=3, help="iterations left out of the time and the later peak")
    ap.add_argument("--images", type=Path, default=TEST_IMAGES)
    ap.add_argument("--write", type=Path, help="also write the report here (markdown)")
    args = ap.parse_args(argv)
    device = pick_device("cuda" if cuda else "cpu")
    emit = Report.opened("python -m bench.size", argv, args.write)
    memory = "allocated" if cuda else "resident set growth"
    emit(f"## Large sizes on {device.type}, single scale, `{default_accel(device).label()}`")
    emit()
    emit(f"| size | pixels | s/iteration | peak MB, whole run ({memory}) | peak MB, later iterations "
         f"| reserved MB, later iterations | engine.memory's estimate MB | estimate ÷ later peak |")
    emit("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for size in args.sizes:
        try:
            m = measure(size, device, Pair.in_folder(args.images), args.steps, args.warmup)
        except Exception as e:  # out of memory at the largest size is a finding too
            emit(f"| {size} | | failed: {type(e).__name__}: {str(e)[:200]} | | | | | |")
            continue
        basis = m.later_reserved if m.later_reserved is not None else m.later_peak
        emit(f"| {m.size} | {m.pixels} | {m.iteration:.4f} | {m.whole_peak:.0f} | {m.later_peak:.0f} | "
             f"{'' if m.later_reserved is None else f'{m.later_reserved:.0f}'} | {m.estimate:.0f} | "
             f"{m.estimate / basis:.2f} |")
    emit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
