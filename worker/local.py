"""The local claim loop: a thread that claims runs from the gallery, checks they fit in memory,
runs the engine on this machine's device, and records progress and the result.

The app runs each Worker in a process of its own (`python -m worker work`, started by
worker/supervisor.py), so the web server's work never competes with a job's. The engine and
torch are imported when the first job starts. Any number of processes may run workers on the
same data folder; claiming is atomic in the database, so each job runs exactly once.

Other workers reuse the loop through two hooks: `claimable()` says which runs to claim and
`take(gallery, run)` what to do with one (worker/cluster.py sends it to a Ray cluster).
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from engine import memory
from engine.devices import DEVICES, is_device
from engine.params import Params
from gallery import Gallery, Run, resolve_data_dir
from worker.job import MemoryRefused, ProgressHook, available_memory, content_shape, params_on_device, run_engine, worker_name
from worker.progress import ProgressWriter

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.5
ERROR_BACKOFF_S = 5.0


class Worker:
    """One thread running the queue of a data folder on one device. `device="auto"` takes every
    job; "cpu", "cuda" or "cuda:N" take jobs asking for that device, for any of its kind or for
    "auto" (see claimable)."""

    label_override: str | None = None  # what a subclass's workers are called instead of their device

    def __init__(self, data_dir: str | os.PathLike | None = None, device: str = "auto", *,
                 engine: ModuleType | Any = None,
                 memory_probe: Callable[[str], int | None] = available_memory,
                 poll_interval: float = POLL_INTERVAL_S, memory_budget: int | None = None):
        if not is_device(device):
            raise ValueError(f"device must be one of {', '.join(DEVICES)} or cuda:N, not {device!r}")
        self.data_dir: Path = resolve_data_dir(data_dir)
        self.device = device
        self.name = worker_name(self.label, os.getpid())
        # `engine`: anything with run, Cancelled and OutOfMemory like engine.transfer (tests
        # pass a stand-in); None imports engine.transfer when the first job starts.
        self._engine = engine
        self._memory_probe = memory_probe
        # What a job may use, within its device's free memory: larger ones run in tiles.
        self.memory_budget = memory.budget_from_env() if memory_budget is None else memory_budget
        self._poll_interval = poll_interval
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.current: int | None = None  # id of the run in progress
        self.last_error: str | None = None  # why the loop is backing off, for the UI
        self._unrecorded: dict[int, str] = {}  # runs whose end could not be written yet

    # ---- the thread ---------------------------------------------------------------------------

    def start(self) -> Worker:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=f"worker-{self.device}", daemon=True)
            self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wake(self) -> None:
        """Look at the queue now rather than at the next poll (call after submit)."""
        self._wake.set()

    def stop(self, timeout: float | None = None) -> None:
        """Stops the thread; a job in progress ends as interrupted (it can be requeued)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def label(self) -> str:
        """What this worker is called (its name's first part, the sidebar's line): its device."""
        return self.label_override or self.device

    def claimable(self) -> list[str] | None:
        """Hook: the jobs' devices this worker takes (None: any). Here its own, and those any device
        of its kind will do for ("cuda" on one GPU of several; "auto" anywhere). A plain "cuda"
        worker is GPU 0's."""
        if self.device == "auto":
            return None
        if self.device.startswith("cuda"):
            own = {self.device, "cuda:0"} if self.device == "cuda" else {self.device}
            return sorted(own | {"cuda", "auto"})
        return [self.device, "auto"]

    def _loop(self) -> None:
        gallery: Gallery | None = None
        while not self._stop.is_set():
            try:
                if gallery is None:
                    gallery = Gallery(self.data_dir)
                    recovered = gallery.recover_interrupted()
                    if recovered:
                        log.warning("runs %s were left running by a worker that is gone; marked interrupted", recovered)
                    gallery.remove_orphans()
                self._record_unrecorded(gallery)
                run = gallery.claim_next(self.name, self.claimable())
                self.last_error = None
                if run is None:
                    self._wake.wait(self._poll_interval)
                    self._wake.clear()
                    continue
                self.take(gallery, run)
            except Exception as e:  # the loop must outlive anything (a locked or broken db, a full disk)
                log.exception("worker %s", self.name)
                self.last_error = str(e)
                self._stop.wait(ERROR_BACKOFF_S)
        if gallery is not None:
            gallery.close()

    # ---- one job ------------------------------------------------------------------------------

    def take(self, gallery: Gallery, run: Run) -> None:
        """Hook: what the loop does with a claimed run. Here: run it to its end before the next
        claim (worker/cluster.py sends it off instead and claims again)."""
        self.run_job(gallery, run)

    def _engine_module(self) -> Any:
        if self._engine is None:
            from engine import transfer  # torch: only now, in the worker
            self._engine = transfer
        return self._engine

    def _params_for(self, gallery: Gallery, run: Run) -> Params:
        device = self.device if self.device != "auto" else run.params.device
        return params_on_device(run.params, device, content_shape(gallery, run), run.frames, self._memory_probe,
                                self.memory_budget)

    def run_job(self, gallery: Gallery, run: Run, on_progress: ProgressHook | None = None) -> str:
        """Runs a claimed job to its end and records it; returns the final status. A failing
        job is recorded as failed, never raised."""
        self.current = run.id
        try:
            return self._run_job(gallery, run, on_progress)
        except Exception as e:
            # Recording the end failed too (a full disk fails the database's writes as well):
            # the loop records it once it can, or the run would stay "running" for good.
            self._unrecorded[run.id] = f"The run stopped, and that could not be recorded at the time: {e}."
            raise
        finally:
            self.current = None

    def _record_unrecorded(self, gallery: Gallery) -> None:
        for run_id, message in list(self._unrecorded.items()):
            gallery.fail(run_id, message)
            del self._unrecorded[run_id]

    def _run_job(self, gallery: Gallery, run: Run, on_progress: ProgressHook | None) -> str:
        writer = ProgressWriter(gallery, run.id)

        def progress(p: Any) -> None:
            writer.engine_progress(p)
            if on_progress is not None:
                on_progress(p)

        def should_cancel() -> bool:
            return self._stop.is_set() or gallery.cancel_requested(run.id)

        try:
            result, clip = run_engine(self._engine_module(), gallery, run, self._params_for(gallery, run),
                                      progress, should_cancel, self.memory_budget)
        except Exception as e:
            writer.flush()  # where it stopped, not where the last throttled write was
            return self._record_failure(gallery, run, e)
        return self._save(gallery, run, result, clip)

    def _save(self, gallery: Gallery, run: Run, result: Any, clip: Any) -> str:
        """Records a finished run's result; returns its status ("failed" if saving failed)."""
        try:
            gallery.finish(run.id, result, clip)
        except Exception as e:
            log.exception("saving the result of run %s", run.id)
            gallery.fail(run.id, f"The result could not be saved: {e}")
            return "failed"
        return "done"

    def _record_stopped(self, gallery: Gallery, run: Run) -> str:
        """A run that stopped when asked: interrupted when the worker is stopping, else cancelled."""
        if self._stop.is_set():
            gallery.mark_interrupted(run.id, "The worker was stopped before the run finished.")
            return "interrupted"
        gallery.mark_cancelled(run.id)
        return "cancelled"

    def _record_failure(self, gallery: Gallery, run: Run, error: Exception) -> str:
        # The engine may have failed to import (then it is None): its types match nothing.
        cancelled, out_of_memory = (getattr(self._engine, name, ()) for name in ("Cancelled", "OutOfMemory"))
        if isinstance(error, cancelled):
            return self._record_stopped(gallery, run)
        ours = type(error).__module__.split(".")[0] == "engine"
        if ours or isinstance(error, (MemoryRefused, out_of_memory)):
            # Our own errors (bad image or params, out of memory, weights) speak for themselves.
            message = str(error)
        else:
            log.error("run %s failed", run.id, exc_info=error)
            message = f"{type(error).__name__}: {error}"
        gallery.fail(run.id, message)
        return "failed"
