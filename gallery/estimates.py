"""How long a run will take here, from how long this machine's finished runs took.

A run's cost is its pixel-iterations (`Params.work`); the machine's speed is the median seconds
per unit of the newest finished runs on the same device. No run finished yet: no estimate, and
the UI says "unknown" rather than guess.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from engine.params import Params
from gallery.queries import RunFilter

SAMPLE = 20  # finished runs the speed is measured over


@dataclass(frozen=True)
class Speed:
    """Seconds per pixel-iteration measured over `runs` finished runs."""

    seconds_per_work: float
    runs: int

    def seconds(self, params: Params, aspect: float = 1.0, frames: int = 1) -> float:
        return self.seconds_per_work * params.work(aspect, frames)


def aspect_of(g: Any, content_sha256: str | None) -> float:
    """The content image's short side over its long side (1 when unknown)."""
    found = g.get_input_or_none(content_sha256) if content_sha256 else None
    if not found or not found.width or not found.height:
        return 1.0
    return min(found.width, found.height) / max(found.width, found.height)


def measured_speed(g: Any, device: str = "auto") -> Speed | None:
    """This machine's speed on `device` ("cpu", "cuda"; "auto": whatever ran last)."""
    rates = []
    for run in g.list_runs(RunFilter(status="done"), sort="newest", limit=SAMPLE * 3):
        if device != "auto" and not (run.device_used or "").startswith(device):
            continue
        if run.is_clip and run.requeued_from:
            continue  # it may have continued after frames of the run before it: its time covers the rest
        if run.duration and run.duration > 0:
            rates.append(run.duration / run.params.work(aspect_of(g, run.content_sha256), run.frames))
        if len(rates) == SAMPLE:
            break
    return Speed(statistics.median(rates), len(rates)) if rates else None


def run_seconds(g: Any, run: Any, speed: Speed) -> float:
    """How long `run` takes here from start to end, at `speed`."""
    return speed.seconds(run.params, aspect_of(g, run.content_sha256), run.frames)


def expected_starts(g: Any, running: list[Any], queued: list[Any], workers: int = 1,
                    now: datetime | None = None) -> dict[int, datetime | None]:
    """When each of the `queued` runs (in queue order) should start, by id: the `running` runs'
    time left and the queued runs ahead, shared among `workers`; None without a measured speed.
    A worker that runs several jobs at once (a Ray cluster's claims as many as the cluster has
    room for) counts as the jobs it runs: with runs still queued, that is its room."""
    now = now or datetime.now(timezone.utc)
    speed = measured_speed(g)
    if speed is None:
        return {run.id: None for run in queued}
    workers = max(workers, len(running))
    left = [run_seconds(g, run, speed) * (1 - run.work_done()) for run in running]
    free_at = sorted(now + timedelta(seconds=seconds) for seconds in left)
    free_at += [now] * max(0, workers - len(free_at))
    starts: dict[int, datetime | None] = {}
    for run in queued:
        free_at.sort()
        start = free_at.pop(0)
        starts[run.id] = start
        free_at.append(start + timedelta(seconds=run_seconds(g, run, speed)))
    return starts
