"""A finished run's times, as the benchmarks that queue jobs (bench.workers, bench.watchers) read
them from the gallery."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gallery import Run


@dataclass(frozen=True)
class Finished:
    """A run that is done, with the times the gallery's Run holds as optional (a queued run has
    none yet). One that a worker finished has them all: `started` is set when it is claimed,
    `finished` and `duration` when its result is saved (gallery/queue.py)."""

    run: Run
    started: datetime
    finished: datetime
    duration: float  # seconds, as the gallery records them

    @classmethod
    def of(cls, run: Run) -> Finished:
        """`run`'s times; RuntimeError, with its status and error, if it is not done."""
        if run.status != "done":
            raise RuntimeError(f"run {run.id} {run.status}: {run.error}")
        if run.started is None or run.finished is None or run.duration is None:
            raise RuntimeError(f"run {run.id} is done, but the gallery has no start, end or duration for it")
        return cls(run, run.started, run.finished, run.duration)
