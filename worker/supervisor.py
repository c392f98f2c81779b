"""The app's workers as processes of their own: one `python -m worker work` per device, started,
watched and restarted from a thread of the web server.

A job in a worker process shares nothing with the server but the data folder and its SQLite
queue, so no amount of UI work can take the job's CPU or its GIL. A worker that dies is started
again (after a growing pause, so one that cannot start does not spin); the run it held is marked
interrupted, which makes it re-queueable. The children die with the server: `stop()` at exit,
and the kernel's parent-death signal (see worker/cli.py) should the server be killed outright.

Importing this module stays cheap (no torch): the server only spawns and watches.
"""
from __future__ import annotations

import atexit
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from engine.devices import gpu_count, gpu_device
from gallery import Gallery, resolve_data_dir
from worker.cluster import RAY_ENV
from worker.job import worker_name

log = logging.getLogger(__name__)

RESTART_DELAYS_S = (0.5, 1.0, 2.0, 5.0, 10.0)
STEADY_S = 30.0  # a worker that lived this long starts its next life with the shortest pause
WATCH_INTERVAL_S = 0.25
STOP_TIMEOUT_S = 10.0
LOG_TAIL_CHARS = 600
DEVICES_ENV = "STUDIO_DEVICES"  # e.g. cuda:0,cuda:2 or cpu
THREADS_ENV = "STUDIO_THREADS"


def threads_per_worker(workers: int, cpus: int | None = None) -> int:
    """torch's intra-op threads for each of `workers` processes sharing the machine's cores."""
    cpus = cpus or os.cpu_count() or 1
    return max(1, cpus // max(1, workers))


def default_devices(value: str | None = None, gpus: int | None = None) -> list[str]:
    """The devices to run a worker for: one "ray" worker when $STUDIO_RAY names a cluster;
    $STUDIO_DEVICES, comma-separated; else one worker per GPU and one for CPU jobs where there
    are several GPUs; else one "auto" worker (the GPU if any)."""
    if value is None and os.environ.get(RAY_ENV):
        return ["ray"]
    value = os.environ.get(DEVICES_ENV, "") if value is None else value
    devices = [d.strip() for d in value.split(",") if d.strip()]
    if devices:
        return devices
    gpus = gpu_count() if gpus is None else gpus
    return [gpu_device(i) for i in range(gpus)] + ["cpu"] if gpus > 1 else ["auto"]


@dataclass
class WorkerState:
    """What the UI shows of one worker process."""

    device: str
    pid: int | None
    alive: bool
    starts: int          # how many times it was started
    last_error: str | None  # why its last life ended, when it ended badly

    @property
    def name(self) -> str | None:
        """The worker's name, as the runs it claims record it (Run.worker)."""
        return worker_name(self.device, self.pid) if self.pid else None


class _Slot:
    """One device's worker process and its history."""

    def __init__(self, device: str, log_path: Path):
        self.device = device
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.failures = 0  # consecutive short lives
        self.started_at = 0.0
        self.next_start = 0.0
        self.last_error: str | None = None

    def state(self) -> WorkerState:
        proc = self.proc
        alive = proc is not None and proc.poll() is None
        return WorkerState(self.device, proc.pid if proc else None, alive, self.starts, self.last_error)


class Supervisor:
    """Keeps one worker process per device running for a data folder."""

    def __init__(self, data_dir: str | os.PathLike | None = None, devices: list[str] | None = None, *,
                 threads: int | None = None, python: str = sys.executable):
        self.data_dir = resolve_data_dir(data_dir)
        self.devices = devices or default_devices()
        # An OMP_NUM_THREADS the server was started with is a choice too (docs/reliability.md).
        env_threads = os.environ.get(THREADS_ENV) or os.environ.get("OMP_NUM_THREADS")
        self.threads = threads or (int(env_threads) if env_threads else threads_per_worker(len(self.devices)))
        self.python = python
        log_dir = self.data_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        names = [d.replace(":", "-") for d in self.devices]
        # Two workers on one device (several CPU workers) keep logs of their own.
        names = [n if names.count(n) == 1 else f"{n}-{names[:i].count(n) + 1}" for i, n in enumerate(names)]
        self._slots = [_Slot(d, log_dir / f"worker-{n}.log") for d, n in zip(self.devices, names)]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # ---- life -------------------------------------------------------------------------------

    def start(self) -> Supervisor:
        with self._lock:
            if self._thread is None:
                # The children get the parent-death signal when the *thread* that forked them
                # ends, so one long-lived thread forks them all, and ends only in stop().
                self._thread = threading.Thread(target=self._watch, name="worker-supervisor", daemon=True)
                self._thread.start()
                atexit.register(self.stop)
        return self

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stops every worker: SIGTERM (its job ends as interrupted), then SIGKILL after `timeout`."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        for slot in self._slots:
            self._terminate(slot, timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def states(self) -> list[WorkerState]:
        return [slot.state() for slot in self._slots]

    # ---- the watching thread ----------------------------------------------------------------

    def _watch(self) -> None:
        while not self._stop.is_set():
            for slot in self._slots:
                try:
                    self._tend(slot)
                except Exception as e:  # the watcher must outlive anything (a full disk, no python)
                    log.exception("supervising the %s worker", slot.device)
                    slot.last_error = f"{type(e).__name__}: {e}"
                    self._schedule_restart(slot, short_life=True)
            self._stop.wait(WATCH_INTERVAL_S)

    def _tend(self, slot: _Slot) -> None:
        proc = slot.proc
        if proc is not None and proc.poll() is not None:
            self._buried(slot, proc.returncode)
        if slot.proc is None and time.monotonic() >= slot.next_start and not self._stop.is_set():
            self._spawn(slot)

    def _spawn(self, slot: _Slot) -> None:
        where = ["--ray", os.environ.get(RAY_ENV, "auto")] if slot.device == "ray" else ["--device", slot.device]
        cmd = [self.python, "-m", "worker", "--data", str(self.data_dir), "work", *where,
               "--threads", str(self.threads), "--parent-pid", str(os.getpid())]
        root = Path(__file__).resolve().parents[1]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
        with open(slot.log_path, "ab") as out:
            out.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {' '.join(cmd)}\n".encode())
            out.flush()
            slot.proc = subprocess.Popen(cmd, cwd=root, env=env, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT)
        slot.starts += 1
        slot.started_at = time.monotonic()
        log.info("started the %s worker, pid %s", slot.device, slot.proc.pid)

    def _buried(self, slot: _Slot, code: int) -> None:
        """A worker ended by itself: say why, release its run, and plan its restart."""
        slot.proc = None
        how = f"killed by signal {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
        tail = _tail(slot.log_path)
        slot.last_error = f"The {slot.device} worker {how}" + (f": {tail}" if tail else ".")
        log.warning("%s", slot.last_error)
        with Gallery(self.data_dir) as gallery:
            recovered = gallery.recover_interrupted()
        if recovered:
            log.warning("runs %s were interrupted by the worker's end", recovered)
        self._schedule_restart(slot, short_life=time.monotonic() - slot.started_at < STEADY_S)

    def _schedule_restart(self, slot: _Slot, short_life: bool) -> None:
        slot.failures = slot.failures + 1 if short_life else 0
        slot.next_start = time.monotonic() + RESTART_DELAYS_S[min(slot.failures, len(RESTART_DELAYS_S) - 1)]

    def _terminate(self, slot: _Slot, timeout: float) -> None:
        proc, slot.proc = slot.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        with Gallery(self.data_dir) as gallery:  # a killed worker leaves its run to us
            gallery.recover_interrupted()


def _tail(path: Path, chars: int = LOG_TAIL_CHARS) -> str:
    """The end of a worker's log since its last start: usually the line that says what failed."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16 * chars))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    parts = ("\n" + text).rsplit("\n--- ", 1)
    text = parts[1].partition("\n")[2] if len(parts) == 2 else text
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return " ".join(lines[-3:])[-chars:]
