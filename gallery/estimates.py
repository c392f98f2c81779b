"""How long a run will take here, from how long this machine's finished runs took.

A run's time, from the moment a worker claims it to its result saved, is modelled as

    fixed + per_step × steps + per_work × work

`fixed` is what does not grow with the run (starting the engine, loading the network, the style
images' pass, saving), measured as each run's wall time less its optimisation; `steps` are its
iterations (a clip's later frames too) and `work` their pixel-iterations (`Params.work`); the two
rates are fitted to the optimisation times of the newest finished runs on the same device. A
small run is mostly fixed cost and per-step overhead, a large one mostly pixels: one rate per
pixel alone said "about 3 s" for a first run that took 28 s.

Estimates are ranges: the spread of the fit over the runs it was made from, and no narrower than
±15 %. No run finished yet: no estimate, and the UI says "unknown" rather than guess.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.params import Params, eta_seconds
from gallery.queries import RunFilter
from gallery.times import to_utc

SAMPLE = 20  # finished runs the speed is measured over
MIN_SPREAD = 0.15  # an estimate's range is at least ±15 %
ONE_RUN_SPREAD = 0.5  # from one run, the rates cannot be told apart: ±50 %


def steps_of(params: Params, frames: int = 1) -> int:
    """Iterations a run takes: every scale's, and a clip's later frames' own."""
    return params.total_iterations() + max(0, frames - 1) * params.frame_iterations


@dataclass(frozen=True)
class Speed:
    """This machine's speed, measured over `runs` finished runs: see the module's docstring."""

    fixed: float
    per_step: float
    per_work: float
    spread: float  # relative half-width of an estimate's range
    runs: int

    def seconds(self, params: Params, aspect: float = 1.0, frames: int = 1) -> float:
        return self.fixed + self.per_step * steps_of(params, frames) + self.per_work * params.work(aspect, frames)

    def range(self, params: Params, aspect: float = 1.0, frames: int = 1) -> tuple[float, float]:
        """(shortest, longest) it should take."""
        middle = self.seconds(params, aspect, frames)
        return middle * (1 - self.spread), middle * (1 + self.spread)


def aspect_of(g: Any, content_sha256: str | None) -> float:
    """The content image's short side over its long side (1 when unknown)."""
    found = g.get_input_or_none(content_sha256) if content_sha256 else None
    if not found or not found.width or not found.height:
        return 1.0
    return min(found.width, found.height) / max(found.width, found.height)


@dataclass(frozen=True)
class _Sample:
    steps: int
    work: float
    optimize: float  # seconds
    wall: float  # seconds, claimed to saved


def _sample(g: Any, run: Any) -> _Sample | None:
    if run.is_clip and run.requeued_from:
        return None  # it may have continued after frames of the run before it: its time covers the rest
    started, finished = to_utc(run.started), to_utc(run.finished)
    # At least the engine's own total: started and finished can be missing (an import), and
    # they are the database's clock while the total is the engine's.
    wall = max((finished - started).total_seconds() if started and finished else 0.0, run.duration or 0.0)
    if wall <= 0:
        return None
    optimize = (run.timings or {}).get("optimize")
    if not isinstance(optimize, (int, float)) or not 0 < optimize <= wall:
        optimize = wall  # a run without the engine's timings (an import): all of it counts as work
    return _Sample(steps_of(run.params, run.frames), run.params.work(aspect_of(g, run.content_sha256), run.frames),
                   float(optimize), float(wall))


def _rates(samples: list[_Sample]) -> tuple[float, float]:
    """(per_step, per_work) fitting optimize ≈ per_step·steps + per_work·work, both ≥ 0: least
    squares, relative (each run weighs alike, small or large), falling back to one rate."""
    rows = [(s.steps / s.optimize, s.work / s.optimize) for s in samples]  # each row's target is 1
    aa = sum(x * x for x, _ in rows)
    ab = sum(x * y for x, y in rows)
    bb = sum(y * y for _, y in rows)
    a1, b1 = sum(x for x, _ in rows), sum(y for _, y in rows)
    det = aa * bb - ab * ab
    if det > 1e-12 * aa * bb:
        per_step, per_work = (a1 * bb - b1 * ab) / det, (b1 * aa - a1 * ab) / det
        if per_step >= 0 and per_work >= 0:
            return per_step, per_work
    # One rate only: per pixel-iteration (what tells large runs apart), as a median.
    return 0.0, statistics.median(s.optimize / s.work for s in samples)


def measured_speed(g: Any, device: str = "auto") -> Speed | None:
    """This machine's speed on `device` ("cpu", "cuda"; "auto": whatever ran last)."""
    samples = []
    for run in g.list_runs(RunFilter(status="done"), sort="newest", limit=SAMPLE * 3):
        if device != "auto" and not (run.device_used or "").startswith(device):
            continue
        sample = _sample(g, run)
        if sample is not None:
            samples.append(sample)
        if len(samples) == SAMPLE:
            break
    if not samples:
        return None
    per_step, per_work = _rates(samples)
    fixed = statistics.median(s.wall - s.optimize for s in samples)
    errors = [abs(fixed + per_step * s.steps + per_work * s.work - s.wall) / s.wall for s in samples]
    spread = ONE_RUN_SPREAD if len(samples) == 1 else max(MIN_SPREAD, 2 * statistics.median(errors))
    return Speed(fixed, per_step, per_work, min(spread, ONE_RUN_SPREAD), len(samples))


def run_seconds(g: Any, run: Any, speed: Speed) -> float:
    """How long `run` takes here from start to end, at `speed`."""
    return speed.seconds(run.params, aspect_of(g, run.content_sha256), run.frames)


def seconds_left(g: Any, run: Any, speed: Speed, now: datetime | None = None) -> float:
    """How long a running run still needs: its own ETA from its progress (what its row shows),
    else the model's time less what has passed."""
    now = now or datetime.now(UTC)
    started = to_utc(run.started)
    elapsed = (now - started).total_seconds() if started else None
    own = eta_seconds(elapsed, run.work_done())
    if own is not None:
        return own
    return max(0.0, run_seconds(g, run, speed) - (elapsed or 0.0))


def expected_starts(g: Any, running: list[Any], queued: list[Any], workers: int = 1,
                    now: datetime | None = None) -> dict[int, datetime | None]:
    """When each of the `queued` runs (in queue order) should start, by id: the `running` runs'
    time left (their own ETAs, so a waiting run never starts before the run ahead says it ends)
    and the queued runs ahead, shared among `workers`; None without a measured speed. A worker
    that runs several jobs at once (a Ray cluster's claims as many as the cluster has room for)
    counts as the jobs it runs: with runs still queued, that is its room."""
    now = now or datetime.now(UTC)
    speed = measured_speed(g)
    if speed is None:
        return {run.id: None for run in queued}
    workers = max(workers, len(running))
    free_at = sorted(now + timedelta(seconds=seconds_left(g, run, speed, now)) for run in running)
    free_at += [now] * max(0, workers - len(free_at))
    starts: dict[int, datetime | None] = {}
    for run in queued:
        free_at.sort()
        start = free_at.pop(0)
        starts[run.id] = start
        free_at.append(start + timedelta(seconds=run_seconds(g, run, speed)))
    return starts
