"""`python -m bench.prints`: prints on this machine (issue 31), bench.size's successor for tiled
evaluation. Figures, not assertions; each section runs only when asked for.

    python -m bench.prints --fits                          what fits where, by engine.memory (instant)
    python -m bench.prints --tiled 2048 4096 8192          time and memory of tiled runs
    python -m bench.prints --compare 2048                  tiled against whole-image, and the seams
    python -m bench.prints --combine 2048                  crop-the-gradient against count-the-core
    python -m bench.prints --history 512                   L-BFGS's loss with 20, 10 and 5 pairs
    python -m bench.prints --seams RESULT.png --tile 1024  the seams figure of a finished tiled result
    python -m bench.prints --print-crops OUT --from 512 --print-size 2048   a print, and full-size crops

--tiled: for each size one single-scale L-BFGS run from the content image, evaluated as the engine
does by default in the memory this machine has free (or --budget): seconds per iteration (the
median between iteration reports after the first --warmup; at least one warm-up, so at least two
iterations), the resident set's growth over the run (its high-water mark, reset through
/proc/self/clear_refs), engine.memory's estimate for the plan the run took, the same with only
the L-BFGS pairs so few steps have kept (Plan.device_bytes_after; a full history needs 20 steps)
and its ratio to the growth, and the whole image's estimate beside them.
--compare: the same run at one size whole and tiled (a budget just under the whole image's
estimate: the largest tiles beneath it, or --compare-budget), seconds per megapixel of each and
their ratio, and the seams figure of the tiled result: mean |difference| of neighbouring pixels
across the tiles' borders over the same across the 16 lines on either side (1 = no seam), beside
the same figure of the whole-image result at the same lines (what the picture itself has there)
and around columns and rows drawn at random (its noise).
--combine: one evaluation of loss and gradient in the same cores, by engine.tiles' two exact
ways: "crop" (160 px halos) and "core" (80 px; the engine's), seconds each and pixels through
the network.
--history: loss after 10, 25, 50 and 100 iterations, single scale from the content image, with
L-BFGS keeping 20 (the engine's up to 2048 x 2048 px), 10 and 5 pairs.
--print-crops: a print as the studio makes one: a --from px result (multi-scale), then the print
at --print-size starting from it with multiscale_from, the style image at its own resolution
(the engine's rule) and, to compare, stretched to the print's size first; --plain adds a run at
the print's size from scratch. --painting-side shrinks the painting first, to see at small sizes
what a print far beyond a painting's resolution does. Writes each result and crops.png: the
same full-size crop of each, and of the painting as the print's fine scales see it.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import torch
from PIL import Image

from bench.measure import Pair, Report, base_params, sync
from bench.size import MB, Peaks
from engine import images, memory, tiles
from engine.accel import default_accel, prepare
from engine.memory import estimate_bytes, format_bytes, parse_bytes, plan
from engine.objective import style_grams
from engine.params import Params
from engine.tiled import TiledObjective, free_bytes
from engine.transfer import Progress, _style_tensors, pick_device, run, to_tensor
from engine.vgg import FeatureNet, load_weights
from harness.paths import ROOT, TEST_IMAGES

GB = 1000**3


@dataclass
class Timed:
    size: int
    pixels: int
    iteration: float  # seconds
    peak: float  # MB of resident set (or CUDA reservation) growth over the run, in a fresh process
    estimate: float  # MB, engine.memory's plan for what the run took
    short: float  # MB, the same with only the L-BFGS pairs these few steps have kept
    whole: float  # MB, engine.memory's estimate for the whole image at once
    evaluation: str
    image: Image.Image


def timed_run(p: Params, device: torch.device, warmup: int, budget: int | None) -> Timed:
    """`p` run in a process of its own (a process that ran something before keeps memory it
    freed resident, which would hide part of the next run's growth)."""
    with tempfile.TemporaryDirectory(prefix="bench-prints-") as tmp:
        out = Path(tmp) / "result.png"
        spec = {"params": p.to_json(), "device": device.type, "warmup": warmup, "budget": budget, "out": str(out)}
        proc = subprocess.run([sys.executable, "-m", "bench.prints", "--one", json.dumps(spec)], cwd=ROOT,
                              capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError((proc.stderr.strip().splitlines() or ["no output"])[-1])
        found = json.loads(proc.stdout.strip().splitlines()[-1])
        return Timed(**found, image=Image.open(out).convert("RGB"))


def one(spec: dict) -> None:
    """The child's side of timed_run: one run, its figures as a line of JSON on stdout."""
    p, device, warmup, budget = Params.from_json(spec["params"]), pick_device(spec["device"]), spec["warmup"], spec["budget"]
    peaks = Peaks(device)
    stamps: list[float] = []

    def on_progress(pr: Progress) -> None:
        if not pr.tile:
            sync(device)
            stamps.append(time.perf_counter())

    available = memory.within_budget(free_bytes(device), budget)
    shape = Image.open(p.content).size
    on_device = p.with_changes(device=device.type)
    planned = plan(on_device, available, shape)
    peaks.reset()
    before = peaks.current()
    result = run(p, on_progress=on_progress, memory_budget=budget)
    allocated, reserved = peaks.peak()
    result.image.save(spec["out"])
    times = [b - a for a, b in zip(stamps[warmup - 1:], stamps[warmup:])]
    width, height = result.image.size
    print(json.dumps({"size": p.size, "pixels": width * height, "iteration": statistics.median(times),
                      "peak": (reserved or allocated) - before, "estimate": planned.device_bytes / MB,
                      "short": planned.device_bytes_after(p.iterations) / MB,
                      "whole": estimate_bytes(on_device, shape) / MB, "evaluation": result.evaluation}))


def tiled_sizes(emit: Report, device: torch.device, pair: Pair, sizes: list[int], steps: int, warmup: int,
                budget: int | None) -> None:
    emit(f"## Tiled runs on {device.type}, single scale, `{default_accel(device).label()}`")
    emit()
    emit("| size | pixels | evaluated | s/iteration | s/megapixel | peak MB (growth) | estimate MB | "
         "estimate, pairs kept so far, MB | that ÷ peak | whole-image estimate MB |")
    emit("| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for size in sizes:
        p = base_params(size, device.type, pair, multiscale=False, iterations=warmup + steps, init="content")
        try:
            t = timed_run(p, device, warmup, budget)
        except Exception as e:  # out of memory at the largest size is a finding too
            emit(f"| {size} | | failed: {type(e).__name__}: {str(e)[:200]} | | | | | | |")
            continue
        emit(f"| {size} | {t.pixels} | {t.evaluation} | {t.iteration:.2f} | {t.iteration / t.pixels * 1e6:.2f} | "
             f"{t.peak:.0f} | {t.estimate:.0f} | {t.short:.0f} | {t.short / t.peak:.2f} | {t.whole:.0f} |")
    emit()


NEAR = 16  # lines on either side of a border that it is compared with


def seams(image: Image.Image, cut: list[tiles.Tile], rng: random.Random) -> tuple[float, float]:
    """(mean |difference| of neighbouring pixels across the cores' borders over the same across
    the NEAR lines on either side of each, the same around lines drawn at random instead). A
    seam is a step at the border: well above 1. Near lines, not the whole image, so that what
    the picture shows there weighs the same in both."""
    grey = _pixels(image, "L")
    # Differences across vertical lines (between columns i-1 and i, at index i-1), and across rows.
    across = {"x": grey.diff(dim=1).abs().mean(dim=0), "y": grey.diff(dim=0).abs().mean(dim=1)}
    borders = {"x": sorted({t.core.x0 for t in cut if t.core.x0}), "y": sorted({t.core.y0 for t in cut if t.core.y0})}

    def ratio(lines: dict[str, list[int]]) -> float:
        on, near = [], []
        for axis, line in lines.items():
            for i in line:
                around = [j for j in range(i - 1 - NEAR, i + NEAR) if j != i - 1 and 0 <= j < len(across[axis])]
                on.append(float(across[axis][i - 1]))
                near.append(float(across[axis][around].mean()))
        return statistics.mean(on) / statistics.mean(near)

    width, height = image.size
    drawn = {"x": rng.sample(range(NEAR + 1, width - NEAR), len(borders["x"])),
             "y": rng.sample(range(NEAR + 1, height - NEAR), len(borders["y"]))}
    return ratio(borders), ratio(drawn)


def compare(emit: Report, device: torch.device, pair: Pair, size: int, steps: int, warmup: int,
            budget: int | None) -> None:
    p = base_params(size, device.type, pair, multiscale=False, iterations=warmup + steps, init="content")
    shape = Image.open(p.content).size
    budget = budget or estimate_bytes(p.with_changes(device=device.type), shape) - 1
    whole = timed_run(p, device, warmup, None)
    tiled = timed_run(p, device, warmup, budget)
    emit(f"## {size} px on {device.type}: tiled against whole-image (taken in turn, each run in a process of its own)")
    emit()
    emit("| | evaluated | s/iteration | s/megapixel | peak MB (growth) | estimate MB | estimate, pairs kept so far, MB | "
         "that ÷ peak |")
    emit("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, t in (("whole image", whole), (f"tiled (budget {format_bytes(budget)})", tiled)):
        emit(f"| {name} | {t.evaluation or 'whole'} | {t.iteration:.2f} | {t.iteration / t.pixels * 1e6:.2f} | "
             f"{t.peak:.0f} | {t.estimate:.0f} | {t.short:.0f} | {t.short / t.peak:.2f} |")
    emit()
    emit(f"Tiled ÷ whole, seconds per megapixel: **{tiled.iteration / whole.iteration:.2f}×**; "
         f"the results differ by {image_difference(whole.image, tiled.image)}.")
    found = plan(p.with_changes(device=device.type), memory.within_budget(free_bytes(device), budget), shape)
    if found.tiled:
        width, height = tiled.image.size
        cut = tiles.grid(width, height, found.tile, found.halo)
        border, noise = seams(tiled.image, cut, random.Random(0))
        control, _ = seams(whole.image, cut, random.Random(0))
        emit(f"Seams, on the tiled result ({found.evaluation}): across the tiles' borders ÷ near them "
             f"**{border:.3f}**; the whole-image result at the same lines {control:.3f} (what the picture has "
             f"there), at random lines {noise:.3f}.")
    emit()


def _pixels(image: Image.Image, mode: str = "RGB") -> torch.Tensor:
    """(height, width[, channels]) floats of `image` in `mode`."""
    data = torch.frombuffer(bytearray(image.convert(mode).tobytes()), dtype=torch.uint8)
    return data.view(image.height, image.width, -1).squeeze(-1).float()


def image_difference(a: Image.Image, b: Image.Image) -> str:
    diff = (_pixels(a) - _pixels(b)).abs().to(torch.long).view(-1)
    # Whole grey levels: the 99th percentile from their counts (torch.quantile stops at 16M values).
    counts = torch.bincount(diff, minlength=256).cumsum(0)
    p99 = int(torch.searchsorted(counts, 0.99 * diff.numel()))
    return f"mean {diff.float().mean():.2f}, 99th percentile {p99}, max {int(diff.max())} grey levels"


def combine(emit: Report, device: torch.device, pair: Pair, size: int, core: int) -> None:
    """One evaluation of the tiled objective each way, in the same cores."""
    p = base_params(size, device.type, pair)
    accel = default_accel(device)
    net = prepare(FeatureNet(load_weights(p.weights, device), p.content_layers + p.style_layers, p.pooling, device),
                  accel)
    content = to_tensor(images.resize_longest(images.load_image(p.content), size), device).contiguous()
    styles = [images.load_image(s) for s in p.styles]
    grams = style_grams(p, net, _style_tensors(styles, min(size, 1024), p, device), accel)
    height, width = content.shape[-2:]
    emit(f"## Two exact ways to combine tiles, {width}×{height} px in cores of {core} px, one evaluation each")
    emit()
    emit("| combine | halo px | tiles | pixels through the network (× the image) | seconds |")
    emit("| --- | ---: | ---: | ---: | ---: |")
    for way in ("warm-up", *tiles.COMBINES):  # the first evaluation pays for one-off set-up
        margin = tiles.halo("conv5_1", way if way != "warm-up" else "core")
        cut = tiles.grid(width, height, core, margin)
        objective = TiledObjective(p, net, content, grams, cut, accel, combine=way if way != "warm-up" else "core")
        x = content.clone().requires_grad_(True)
        sync(device)
        started = time.perf_counter()
        loss, _ = objective(x)
        loss.backward()
        sync(device)
        seconds = time.perf_counter() - started
        through = sum(t.box.width * t.box.height for t in cut) / (width * height)
        if way != "warm-up":
            emit(f"| {way} | {margin} | {len(cut)} | {through:.2f} | {seconds:.1f} |")
    emit()


def fixed_history(pairs: int) -> Callable[[int], int]:
    """A stand-in for engine.memory.lbfgs_history: `pairs`, whatever the pixels."""
    return lambda _pixels: pairs


def history(emit: Report, device: torch.device, pair: Pair, size: int, iterations: int) -> None:
    checkpoints = [i for i in (10, 25, 50, 100, 200, 500) if i <= iterations]
    emit(f"## L-BFGS history at {size} px on {device.type}: loss after n iterations (single scale, from the content)")
    emit()
    emit(f"| pairs | {' | '.join(f'n = {n}' for n in checkpoints)} | s/iteration |")
    emit(f"| ---: | {' | '.join('---:' for _ in checkpoints)} | ---: |")
    first: list[float] = []
    for pairs in (20, 10, 5):
        losses: list[float] = []
        # The engine's choice of pairs goes by pixels (engine.memory.lbfgs_history); here it is set.
        with mock.patch.object(memory, "lbfgs_history", fixed_history(pairs)):
            started = time.perf_counter()
            run(base_params(size, device.type, pair, multiscale=False, iterations=iterations, init="content"),
                on_progress=lambda pr: losses.append(pr.losses["total"]))
            seconds = (time.perf_counter() - started) / iterations
        at = [losses[n - 1] for n in checkpoints]
        first = first or at
        cells = [f"{v:.4g}" + ("" if v is f else f" ({v / f:.3f}×)") for v, f in zip(at, first)]
        emit(f"| {pairs} | {' | '.join(cells)} | {seconds:.2f} |")
    emit()


def print_crops(emit: Report, device: torch.device, pair: Pair, out: Path, small: int, size: int,
                iterations: int, painting_side: int | None, plain: bool, stretched: bool, budget: int | None) -> None:
    from bench.quality import captioned, concat, save_small  # figure helpers

    out.mkdir(parents=True, exist_ok=True)
    painting = images.load_image(pair.style)
    if painting_side:
        painting = images.resize_longest(painting, painting_side)
    native = out / "painting.png"
    painting.save(native)
    stretched_file = out / "painting-stretched.png"
    images.resize_longest(painting, max(size, max(painting.size)), min_side=1).save(stretched_file)
    base = base_params(small, device.type, pair, iterations=iterations).with_changes(styles=(str(native),))
    runs: dict[str, Path] = {"start": out / f"start-{small}.png"}
    started = time.perf_counter()
    run(base).image.save(runs["start"])
    emit(f"## A {size} px print grown from a {small} px result ({iterations} iterations a scale), on {device.type}")
    emit()
    emit(f"- {small} px result: {time.perf_counter() - started:.0f} s")
    grown = base.with_changes(size=size, init="image", init_image=str(runs["start"]), multiscale_from=small)
    variants = {"print": grown}
    if stretched:
        variants["print, painting stretched"] = grown.with_changes(styles=(str(stretched_file),))
    if plain:
        variants["plain run"] = base.with_changes(size=size)
    for name, p in variants.items():
        started = time.perf_counter()
        result = run(p, memory_budget=budget)
        runs[name] = out / f"{name.replace(', ', '-').replace(' ', '-')}-{size}.png"
        result.image.save(runs[name])
        emit(f"- {name}: scales {' → '.join(map(str, p.scale_sizes()))}, {time.perf_counter() - started:.0f} s, "
             f"{result.evaluation or 'plain'}, loss {result.losses['total']:.4g} → {runs[name].name}")
    side = min(256, size // 2)
    first = Image.open(runs["print"])
    # A crop from the middle of the image, where tubingen has houses and sky.
    left, top = (first.width - side) // 2, (first.height - side) // 3
    crops = [captioned(Image.open(path).convert("RGB").crop((left, top, left + side, top + side)), name)
             for name, path in runs.items() if name != "start"]
    shown = Image.open(native).convert("RGB")
    crops.append(captioned(shown.crop((0, 0, min(side, shown.width), min(side, shown.height))),
                           f"the painting, {max(shown.size)} px"))
    figure = out / "crops.png"
    save_small(concat(crops, horizontal=True), figure)
    emit(f"- full-size crops ({side} px from each): {figure}")
    emit()


def fits(emit: Report, pair: Pair) -> None:
    free = memory.cpu_available_bytes()
    shape = images.load_image(pair.content).size
    emit("## What fits where (engine.memory, tubingen's 4:3, default settings, L-BFGS)")
    emit()
    places = [("this machine's CPU", "cpu", free, None), ("a 24 GB GPU", "cuda", 24 * GB, 64 * GB),
              ("an 80 GB GPU", "cuda", 80 * GB, 256 * GB)]
    emit(f"| size | whole-image estimate | {' | '.join(f'{name} ({format_bytes(room or 0)})' for name, _, room, _ in places)} |")
    emit(f"| ---: | ---: | {' | '.join('---' for _ in places)} |")
    for size in (1024, 2048, 3072, 4096, 6144, 8192, 12288, 16384):
        cells = []
        for _, device, room, host in places:
            p = Params(size=size, device=device)
            found = plan(p, room, shape, host_available=host)
            if not found.fits(room, host):
                cells.append("refused")
                continue
            how = found.evaluation or "whole"
            host_note = ", history in RAM" if found.history_on_host else ""
            cells.append(f"{how}, {format_bytes(found.device_bytes)}{host_note}")
        emit(f"| {size} | {format_bytes(estimate_bytes(Params(size=size), shape))} | {' | '.join(cells)} |")
    emit()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.prints", description=__doc__.split("\n\n")[0])
    ap.add_argument("--fits", action="store_true", help="what fits where, by engine.memory")
    ap.add_argument("--tiled", type=int, nargs="+", default=[], metavar="SIZE")
    ap.add_argument("--compare", type=int, metavar="SIZE", help="tiled against whole-image at this size")
    ap.add_argument("--compare-budget", type=parse_bytes, help="the tiled run's budget (default: just under the whole)")
    ap.add_argument("--combine", type=int, metavar="SIZE", help="crop against core, one evaluation each")
    ap.add_argument("--combine-core", type=int, default=1024, metavar="PX")
    ap.add_argument("--history", type=int, metavar="SIZE", help="loss with 20, 10 and 5 L-BFGS pairs")
    ap.add_argument("--history-iterations", type=int, default=100)
    ap.add_argument("--seams", type=Path, metavar="PNG", help="the seams figure of a finished tiled result")
    ap.add_argument("--tile", type=int, metavar="PX", help="with --seams: its tiles' core (from its evaluation)")
    ap.add_argument("--print-crops", type=Path, metavar="FOLDER", help="make a print and its crops there")
    ap.add_argument("--from", dest="small", type=int, default=512, metavar="PX", help="with --print-crops")
    ap.add_argument("--print-size", type=int, default=2048, metavar="PX", help="with --print-crops")
    ap.add_argument("--iterations", type=int, default=100, help="with --print-crops: at each scale")
    ap.add_argument("--painting-side", type=int, metavar="PX", help="with --print-crops: shrink the painting first")
    ap.add_argument("--plain", action="store_true", help="with --print-crops: a run from scratch at the print's size")
    ap.add_argument("--stretched", action=argparse.BooleanOptionalAction, default=True,
                    help="with --print-crops: also the print with the painting stretched to its size")
    ap.add_argument("--steps", type=int, default=2, help="iterations timed after the warm-up")
    ap.add_argument("--warmup", type=int, default=1, help="iterations before the timed ones (at least 1)")
    ap.add_argument("--budget", type=parse_bytes, help="memory the --tiled runs may use (default: what is free)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--images", type=Path, default=TEST_IMAGES)
    ap.add_argument("--write", type=Path, help="also write the report here (markdown)")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # a timed run's own process (timed_run)
    args = ap.parse_args(argv)
    if args.one:
        one(json.loads(args.one))
        return 0
    if args.warmup < 1:
        ap.error("--warmup must be at least 1: an iteration is timed from the report of the one before")
    device = pick_device(args.device)
    pair = Pair.in_folder(args.images)
    emit = Report.opened("python -m bench.prints", argv, args.write)
    if args.fits:
        fits(emit, pair)
    if args.seams:
        image = images.load_image(args.seams)
        cut = tiles.grid(*image.size, args.tile or 1024, 0)
        border, noise = seams(image, cut, random.Random(0))
        emit(f"Seams of {args.seams.name} ({image.width}×{image.height}, cores of {args.tile or 1024} px): "
             f"**{border:.3f}** (random lines: {noise:.3f})")
        emit()
    if args.tiled:
        tiled_sizes(emit, device, pair, args.tiled, args.steps, args.warmup, args.budget)
    if args.compare:
        compare(emit, device, pair, args.compare, args.steps, args.warmup, args.compare_budget)
    if args.combine:
        combine(emit, device, pair, args.combine, args.combine_core)
    if args.history:
        history(emit, device, pair, args.history, args.history_iterations)
    if args.print_crops:
        print_crops(emit, device, pair, args.print_crops, args.small, args.print_size, args.iterations,
                    args.painting_side, args.plain, args.stretched, args.budget)
    return 0


if __name__ == "__main__":
    sys.exit(main())
