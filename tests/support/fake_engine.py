"""A stand-in for engine.transfer, so worker tests test the queue, not the optimisation."""
from __future__ import annotations

import threading
import time
from collections import Counter
from types import SimpleNamespace

from PIL import Image

from gallery import Gallery
from support.runs import fake_result


class FakeEngine:
    """Stands in for engine.transfer: `iterations` steps of `step_s` seconds each, reporting
    progress and checking should_cancel before every step, as the real one does."""

    class Cancelled(Exception):
        pass

    class OutOfMemory(RuntimeError):
        pass

    def __init__(self, step_s: float = 0.0, fail_seeds: dict[int, Exception] | None = None):
        self.step_s = step_s
        self.fail_seeds = fail_seeds or {}
        self.calls: list[tuple[int, int]] = []  # (thread id, seed)
        self.last_step = 0
        self.pause_at: int | None = None  # iteration at which to wait for `resume`
        self.paused = threading.Event()
        self.resume = threading.Event()
        self.lock = threading.Lock()

    def run(self, params, on_progress=None, should_cancel=None, memory_budget=None):
        with self.lock:
            self.calls.append((threading.get_ident(), params.seed))
        if params.seed in self.fail_seeds:
            raise self.fail_seeds[params.seed]
        total = params.total_iterations()
        for i in range(1, total + 1):
            if should_cancel():
                raise self.Cancelled()
            time.sleep(self.step_s)
            self.last_step = i
            preview = Image.new("RGB", (16, 12), "blue") if params.preview_every else None
            on_progress(SimpleNamespace(iteration=i, total=total, size=params.size, losses={"total": 1.0 / i},
                                        elapsed=i * self.step_s, preview=preview))
            if i == self.pause_at:
                self.paused.set()
                self.resume.wait(10)
        return fake_result()


def statuses(g: Gallery) -> Counter:
    return Counter(r.status for r in g.list_runs(limit=1000))


def settled(g: Gallery, n: int) -> bool:
    """At least n runs have ended, however they ended."""
    return sum(statuses(g)[s] for s in ("done", "failed", "cancelled", "interrupted")) >= n
