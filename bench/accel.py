"""`python -m bench.accel`: each way of evaluating the loss (engine.accel) on this device, timed
against the VGG19 floor in one run, with the loss each reaches and its picture.

For every size: one engine run per variant, two floors timed between its iterations (as
`python -m bench` does: plain float32, and evaluated as the variant evaluates), then its result
judged by the plain float32 loss, so a variant that is fast but optimises worse shows it. Right
after the first size, whole runs (--full iterations at that size, and a multi-scale preview of
--preview iterations per scale, wall clock) of plain and of the fastest variant whose judged loss
stays within --tolerance of plain's, or of the --whole variants; that fastest variant's label is
written to --out/best-accel.txt (STUDIO_ACCEL takes it).
The results go to --out as one captioned sheet per size, for looking at. Figures, not assertions.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from PIL import Image

from bench.measure import Judge, Pair, Report, base_params, side_by_side, sync
from bench.quality import captioned, fit_height, grid
from engine.accel import Accel
from engine.params import Params
from engine.transfer import pick_device, run
from harness.paths import TEST_IMAGES

VARIANTS = (
    Accel(),
    Accel(fp32=True),  # what TF32 (on by default on CUDA) is worth
    Accel(winograd=True),  # CPU only
    Accel(channels_last=True),
    Accel(bf16=True),
    Accel(channels_last=True, bf16=True),
    Accel(cuda_graph=True),
    Accel(channels_last=True, cuda_graph=True),
    Accel(bf16=True, cuda_graph=True),
    Accel(channels_last=True, bf16=True, cuda_graph=True),
    Accel(cuda_graph=True, graph_step=True),
    Accel(channels_last=True, bf16=True, cuda_graph=True, graph_step=True),
    Accel(compile=True),  # alone and last: each compile costs a minute or more, per size
)


@dataclass
class Measured:
    accel: Accel
    iteration: float
    floor: float
    own_floor: float  # the floor evaluated as this variant evaluates
    loss: float
    peak_mb: float | None
    first: float  # the run's start to its first iteration's end
    image: Image.Image


SHEET_CELL = 512  # px high: enough to see bfloat16's banding or noise, small enough to send back


def sheet(rows: list[Measured]) -> Image.Image:
    return grid([captioned(fit_height(r.image, min(SHEET_CELL, r.image.height)),
                           f"{r.accel.label()}: loss {r.loss:.4g}") for r in rows], columns=3)


def measure(emit: Report, size: int, device: str, pair: Pair, steps: int, variants: list[Accel]) -> list[Measured]:
    """The variants that ran, each row reported as soon as it is measured (a probe cut short by a
    time limit keeps the rows before), then a line for each that could not run."""
    judge = Judge(base_params(size, device, pair))
    emit(f"## {size} px on {device}: {steps} L-BFGS iterations per variant, single scale")
    emit()
    emit("| variant | s/iteration | × its floor | its own floor s | × its own floor | × plain | judged loss "
         "| × plain's loss | peak MB | first iteration s |")
    emit("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    rows, missing = [], []
    for accel in variants:
        if accel.problem(torch.device(device)):
            missing.append(f"{accel.label()}: {accel.problem(torch.device(device))}")
            continue
        try:
            m = side_by_side(base_params(size, device, pair), steps, with_pastiche=False, accel=accel)
        except Exception as e:  # one variant failing (say, no compiler for torch.compile) is a finding
            missing.append(f"{accel.label()} failed: {type(e).__name__}: {str(e)[:300]}")
            continue
        peak = m.peak_bytes / 2**20 if m.peak_bytes is not None else None
        r = Measured(accel, m.iteration, m.floor, m.own_floor, judge(m.result.image), peak, m.first, m.result.image)
        rows.append(r)
        plain = rows[0] if rows[0].accel == Accel() else None
        ratios = (f"{r.iteration / plain.iteration:.2f} | {r.loss:.4g} | {r.loss / plain.loss:.3f}" if plain
                  else f" | {r.loss:.4g} | ")
        emit(f"| {accel.label()} | {r.iteration:.5f} | {r.iteration / r.floor:.2f} | {r.own_floor:.5f} | "
             f"{r.iteration / r.own_floor:.2f} | {ratios} | "
             f"{'' if peak is None else f'{peak:.0f}'} | {r.first:.2f} |")
    emit()
    emit("The first iteration's time runs from the start of the run: loading, the targets, and on CUDA "
         "cuDNN's autotuning of shapes not seen before in this process and the graph's capture. "
         "The floor (forward to conv5_1 and backward to the image, float32 with the device's defaults; "
         "under fp32, TF32 off too) is timed between each variant's own iterations, and so is its own floor: "
         "the same passes evaluated as the variant evaluates them (its layout, bfloat16, CUDA graph; "
         "not the optimizer's step, which graph_step adds to the graph)"
         + (f"; its median for plain was {rows[0].floor:.5f} s." if rows else "."))
    emit()
    for line in missing:
        emit(f"- not measured: {line}")
    if missing:
        emit()
    return rows


def wall_run(emit: Report, p: Params, accel: Accel, note: str = "") -> None:
    """One whole run, wall clock, as a table row (a run that fails is a finding too)."""
    sync(pick_device(p.device))
    started = time.perf_counter()
    scales = " → ".join(map(str, p.scale_sizes()))
    try:
        result = run(p, accel=accel)
    except Exception as e:
        emit(f"| {accel.label()}{note} | {scales} | {p.total_iterations()} | failed: {type(e).__name__}: "
             f"{str(e)[:200]} | | |")
        return
    sync(pick_device(p.device))
    wall = time.perf_counter() - started
    emit(f"| {accel.label()}{note} | {scales} | {p.total_iterations()} | {result.timings['optimize']:.2f} | "
         f"{result.timings['setup']:.2f} | {wall:.2f} |")


def whole_runs(emit: Report, p: Params, accels: list[Accel], full: int, preview: int) -> None:
    """`full` iterations at p.size, single scale; then a multi-scale preview of `preview`
    iterations per scale, twice (the first pays for autotuning shapes new to the process, the
    second only for what every run pays per scale, such as a graph's capture)."""
    if not (full or preview):
        return
    emit(f"## Whole runs at {p.size} px, wall clock")
    emit()
    emit("| variant | scales | iterations | optimising s | setup s | whole run s |")
    emit("| --- | --- | ---: | ---: | ---: | ---: |")
    accels = list(dict.fromkeys(accels))
    for accel in accels if full else []:
        wall_run(emit, p.with_changes(iterations=full, multiscale=False), accel)
    for accel in accels if preview else []:
        for note in (", first time", ", again"):
            wall_run(emit, p.with_changes(iterations=preview, multiscale=True), accel, note)
    emit()


def fastest_good(emit: Report, rows: list[Measured], tolerance: float) -> Accel:
    """The fastest variant whose judged loss is within `tolerance` of plain's."""
    plain = next(r for r in rows if r.accel == Accel())  # plain failing is worth a traceback
    best = min((r for r in rows if r.loss <= plain.loss * (1 + tolerance)), key=lambda r: r.iteration)
    emit(f"Fastest within {tolerance:.0%} of plain's loss: **{best.accel.label()}** "
         f"({plain.iteration / best.iteration:.2f}× plain's iterations per second).")
    emit()
    return best.accel


def main(argv: list[str] | None = None) -> int:
    cuda = torch.cuda.is_available()
    ap = argparse.ArgumentParser(prog="python -m bench.accel", description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 1024] if cuda else [128])
    ap.add_argument("--steps", type=int, default=60 if cuda else 10, help="iterations timed per variant")
    ap.add_argument("--full", type=int, default=1000 if cuda else 0,
                    help="iterations of the headline run at the first size (0: none)")
    ap.add_argument("--preview", type=int, default=20,
                    help="iterations per scale of the multi-scale preview runs at the first size (0: none)")
    ap.add_argument("--tolerance", type=float, default=0.02,
                    help="how much higher than plain's a variant's judged loss may be to be chosen")
    ap.add_argument("--variants", type=Accel.parse, nargs="+", default=list(VARIANTS),
                    help="engine.accel labels (plain is always measured, first)")
    ap.add_argument("--whole", type=Accel.parse, nargs="+",
                    help="the variants of the whole runs (default: plain and the fastest good one)")
    ap.add_argument("--skip", nargs="+", default=[], choices=[f.name for f in fields(Accel)],
                    help="leave out the variants with any of these switches on")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                    help="auto: CUDA where there is a GPU; cpu measures the CPU of a GPU machine too "
                         "(the other defaults stay the GPU's: give --sizes, --steps, --full)")
    ap.add_argument("--images", type=Path, default=TEST_IMAGES)
    ap.add_argument("--out", type=Path, help="folder for the sheets of pictures (default: a new temporary one)")
    ap.add_argument("--write", type=Path, help="also write the report here (markdown)")
    args = ap.parse_args(argv)
    args.out = args.out or Path(tempfile.mkdtemp(prefix="bench-accel-"))
    device = args.device if args.device != "auto" else "cuda" if cuda else "cpu"
    pair = Pair.in_folder(args.images)
    args.out.mkdir(parents=True, exist_ok=True)
    variants = [Accel(), *(v for v in args.variants if v != Accel() and not any(getattr(v, n) for n in args.skip))]
    emit = Report.opened("python -m bench.accel", argv, args.write)
    started = time.perf_counter()
    for size in args.sizes:
        rows = measure(emit, size, device, pair, args.steps, variants)
        try:
            sheet(rows).save(args.out / f"variants-{size}.png")
        except Exception as e:  # on a strange machine the figures matter more than the picture
            print(f"sheet at {size} px not saved: {type(e).__name__}: {e}", file=sys.stderr)
        if size == args.sizes[0]:
            best = fastest_good(emit, rows, args.tolerance)
            (args.out / "best-accel.txt").write_text(best.label() + "\n")
            # Before the other sizes: the headline matters most if time runs out.
            whole_runs(emit, base_params(size, device, pair, preview_every=0), args.whole or [Accel(), best],
                       args.full, args.preview)
    emit(f"Sheets: {args.out}/variants-<size>.png. Whole probe: {(time.perf_counter() - started) / 60:.1f} min.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
