"""Jobs sent to a Ray cluster: the head (this process, beside the gallery) claims runs and hands
each to a Ray task on whichever node has room; the task streams progress back and returns the
result, which the head saves exactly as a local run's is saved.

Remote nodes share nothing with the head but Ray: a run's input files travel as bytes (each put
in Ray's object store once, then reused by every run of the batch that needs it), and the result
comes back as the engine's own Result. A clip's finished frames come back one by one as they
finish and are kept on the head, so an interrupted clip continues after them wherever it runs
next. The node needs the same Python packages (requirements.txt), and the studio's code reaches
it through Ray's runtime environment, so no checkout is needed.

Only this module imports ray, and only when a cluster is asked for (STUDIO_RAY, `--ray`).
"""
from __future__ import annotations

import logging
import os
import queue
import socket
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine import masks
from engine.devices import MAX_GPUS, gpu_device
from engine.params import Params
from gallery import Gallery, Run
from worker.job import content_shape, params_on_device, run_engine
from worker.local import Worker
from worker.progress import ProgressWriter

log = logging.getLogger(__name__)

RAY_ENV = "STUDIO_RAY"        # the cluster's address (host:port), or "auto" for one started here
CPUS_ENV = "STUDIO_RAY_CPUS"  # CPUs (and torch threads) a CPU job takes on its node
STOP_ENV = "STUDIO_RAY_STOP_S"  # seconds a cancelled job gets to stop before it is killed, and then to end
STOP_S = 30.0
WATCH_S = 1.0                 # how often the head looks for a cancel while a job sends nothing
CAPACITY_REFRESH_S = 5.0
INPUT_CACHE = 64              # input files kept in the object store for the runs that follow
NAMESPACE = "studio"
PROBE_TIMEOUT_S = 3.0
CUDA_DEVICES = ("cuda", *map(gpu_device, range(MAX_GPUS)))  # a job's device names that want a GPU


class ClusterUnreachable(RuntimeError):
    """No Ray cluster answered at the address given; the message says what to do."""


def connect(address: str) -> None:
    """Joins this process to the cluster at `address` (host:port, or "auto") as its driver;
    ClusterUnreachable, at once, when nothing answers there."""
    import ray

    if ray.is_initialized():
        return
    address = _resolve(address)
    host_port = _host_port(address)
    root = Path(__file__).resolve().parents[1]
    try:
        # ray.init waits for an absent cluster for minutes; a plain connection says it in seconds.
        socket.create_connection(host_port, timeout=PROBE_TIMEOUT_S).close()
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=False, logging_level=logging.WARNING,
                 # The studio's own packages travel to every node with the job; pip packages do not.
                 runtime_env={"py_modules": [str(root / name) for name in ("engine", "gallery", "worker")]})
    except (OSError, ConnectionError, RuntimeError, ValueError) as e:
        raise ClusterUnreachable(_unreachable(address, _first_line(e))) from e


def _unreachable(address: str, why: str) -> str:
    return (f"No Ray cluster reachable at {address} ({why}). Start one with `ray start --head` "
            f"(README: \"A Ray cluster\"), or unset {RAY_ENV} to run jobs on this machine.")


def _resolve(address: str) -> str:
    """host:port for "auto": Ray's own lookup ($RAY_ADDRESS, else the cluster last started here)."""
    if address != "auto":
        return address
    from ray._private import services

    try:
        found = services.get_ray_address_from_environment("auto", None)
    except Exception as e:  # Ray's lookup raises when it finds nothing
        raise ClusterUnreachable(_unreachable(address, _first_line(e))) from e
    if not found or found == "auto":
        raise ClusterUnreachable(_unreachable(address, "none was started on this machine"))
    return found


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterUnreachable(f"{RAY_ENV}={address!r}: give the cluster's address as host:port, or auto.")
    return host.strip("[]"), int(port)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


@dataclass
class Slots:
    """How many jobs of each kind the cluster has room for at once."""

    gpu: int
    cpu: int


def cluster_slots(resources: dict[str, float], cpus_per_job: int) -> Slots:
    """The room for jobs in Ray's resource totals: a GPU job takes a GPU, a CPU job `cpus_per_job`."""
    return Slots(int(resources.get("GPU", 0)), int(resources.get("CPU", 0) // max(1, cpus_per_job)))


def wants_gpu(device: str, slots: Slots) -> bool:
    """Whether a job asking for `device` goes to a GPU of the cluster ("auto": when it has one)."""
    return device in CUDA_DEVICES or (device == "auto" and slots.gpu > 0)


def claimable(slots: Slots, gpu_busy: int, cpu_busy: int) -> list[str]:
    """The job devices to claim now, given the room left."""
    devices: list[str] = []
    if gpu_busy < slots.gpu:
        devices += [*CUDA_DEVICES, "auto"]
    if cpu_busy < slots.cpu:
        devices += ["cpu"] if slots.gpu else ["cpu", "auto"]
    return devices


# ---- on the node ----------------------------------------------------------------------------

class _Outbox:
    """What a job on a node writes to instead of the gallery: its progress and finished frames
    become messages for the head; the frames of an interrupted attempt come from the head."""

    def __init__(self, messages: queue.Queue, done_frames: list[Path]):
        self._messages = messages
        self._done_frames = done_frames

    def record_progress(self, run_id: int, iteration: int, total: int, losses: dict[str, float],
                        previews: list, frame: int = 0, tile: int = 0, tiles: int = 0) -> bool:
        self._messages.put(("progress", iteration, total, losses, previews, {"frame": frame, "tile": tile, "tiles": tiles}))
        return True

    def record_frame(self, run_id: int, position: int, image: Any) -> bool:
        self._messages.put(("frame", position, image))
        return True

    def resume_frames(self, run_id: int) -> list[Path]:
        return self._done_frames


def _write_files(folder: Path, names: list[str], blobs: tuple[bytes, ...]) -> dict[str, Path]:
    """Each blob written to `folder` under its name's file name; name → the file."""
    files: dict[str, Path] = {}
    for i, (name, data) in enumerate(zip(names, blobs)):
        files[name] = folder / f"{i}-{Path(name).name}"
        files[name].write_bytes(data)
    return files


def _inputs_in(params: Params, local: dict[str, Path]) -> Params:
    """`params` with each input path replaced by its copy on this node."""
    return params.with_changes(
        content=str(local[params.content]), styles=tuple(str(local[s]) for s in params.styles),
        style_masks=tuple(m if masks.is_everywhere(m) else str(local[m]) for m in params.style_masks),
        init_image=str(local[params.init_image]) if params.init_image else "")


def run_on_node(run: Run, names: list[str], shape: tuple[int, int] | None, cpus: int, frames: int,
                *blobs: bytes) -> Iterator[tuple]:
    """The Ray task (a generator): runs one job on this node and yields ("node", where),
    ("progress", iteration, total, losses, previews, frame) and, for a clip, ("frame", k, image)
    as they come, then ("result", Result, Clip or None). `blobs`: the files of `names`, then the
    `frames` finished frames of an interrupted attempt. Ray's cancel lands as KeyboardInterrupt
    while it waits for the engine, which then stops at its next iteration."""
    import ray
    import torch

    from engine import transfer

    messages: queue.Queue = queue.Queue()
    cancel = threading.Event()
    with tempfile.TemporaryDirectory(prefix="studio-job-") as tmp:
        folder = Path(tmp)
        inputs, done = blobs[:len(blobs) - frames], blobs[len(blobs) - frames:]
        params = _inputs_in(run.params, _write_files(folder, names, inputs))
        done_frames = list(_write_files(folder, [f"done-{k:04d}.png" for k in range(frames)], done).values())
        outbox = _Outbox(messages, done_frames)

        def job() -> None:
            try:
                device = "cuda" if params.device.startswith("cuda") else params.device  # the GPU Ray gave us
                on_device = params_on_device(params, device, shape, run.frames)
                if on_device.device == "cpu":
                    torch.set_num_threads(cpus)
                node = ray.get_runtime_context().get_node_id()[:8]
                messages.put(("node", f"node {node} at {ray.util.get_node_ip_address()} "
                                      f"({socket.gethostname()}), {on_device.device}"))
                writer = ProgressWriter(outbox, run.id)
                result, clip = run_engine(transfer, outbox, run, on_device, writer.engine_progress, cancel.is_set)
                writer.flush()
                messages.put(("result", result, clip))
            except BaseException as e:  # noqa: BLE001 - raised again in the task, for the head
                messages.put(("error", e))

        thread = threading.Thread(target=job, name="studio-job", daemon=True)
        thread.start()
        try:
            while True:
                try:
                    message = messages.get(timeout=0.2)
                except queue.Empty:
                    continue
                if message[0] == "error":
                    raise message[1]
                yield message
                if message[0] == "result":
                    return
        finally:
            cancel.set()
            thread.join()


# ---- on the head ----------------------------------------------------------------------------

class ClusterWorker(Worker):
    """A worker whose jobs run on a Ray cluster, as many at once as it has room for: it claims
    what the cluster has room for (claimable) and hands each run to a thread that follows it
    there (take)."""

    label_override = "ray"

    def __init__(self, data_dir: str | os.PathLike | None = None, address: str = "auto", *,
                 cpus_per_job: int | None = None, poll_interval: float = 0.5):
        super().__init__(data_dir, "auto", poll_interval=poll_interval)
        self.address = address
        self.cpus_per_job = cpus_per_job or int(os.environ.get(CPUS_ENV) or 1)
        self.stop_s = float(os.environ.get(STOP_ENV) or STOP_S)
        self._jobs: dict[int, tuple[threading.Thread, bool]] = {}  # run id → (its thread, on a GPU)
        self._lock = threading.Lock()
        self._inputs: OrderedDict[str, Any] = OrderedDict()  # file path → its object in the store
        self._slots = Slots(0, 0)
        self._slots_at = 0.0
        self._task: Any = None

    def start(self) -> ClusterWorker:
        connect(self.address)  # here, so a cluster that is not there is said at once
        import ray

        self._task = ray.remote(run_on_node)
        super().start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stops claiming; the jobs out on the cluster are cancelled and end as interrupted."""
        super().stop(timeout)
        with self._lock:
            threads = [t for t, _ in self._jobs.values()]
        for t in threads:
            t.join(timeout)

    def claimable(self) -> list[str]:
        now = time.monotonic()
        if now - self._slots_at > CAPACITY_REFRESH_S:
            import ray

            self._slots = cluster_slots(ray.cluster_resources(), self.cpus_per_job)
            self._slots_at = now
        with self._lock:
            gpu_busy = sum(on_gpu for _, on_gpu in self._jobs.values())
            return claimable(self._slots, gpu_busy, len(self._jobs) - gpu_busy)

    def take(self, gallery: Gallery, run: Run) -> None:
        try:
            args = self._task_args(gallery, run)
        except OSError as e:  # an input file gone from the data folder
            gallery.fail(run.id, f"An input of this run could not be read: {e}")
            return
        except Exception as e:  # the cluster went away between the claim and now
            log.exception("sending run %s to the cluster", run.id)
            gallery.mark_interrupted(run.id, f"The run could not be sent to the cluster ({_first_line(e)}); "
                                             f"re-queue it to run it again.")
            return
        on_gpu = wants_gpu(run.params.device, self._slots)
        thread = threading.Thread(target=self._follow, args=(run, on_gpu, args), name=f"ray-run-{run.id}",
                                  daemon=True)
        with self._lock:
            self._jobs[run.id] = (thread, on_gpu)
        thread.start()

    def _task_args(self, gallery: Gallery, run: Run) -> tuple:
        """run_on_node's arguments: the run, its input files (each put in the object store once
        for every run that needs it), and the frames an interrupted attempt finished."""
        import ray

        p = run.params
        names = list(dict.fromkeys([p.content, *p.styles, *(m for m in p.style_masks if not masks.is_everywhere(m)),
                                    *([p.init_image] if p.init_image else [])]))
        refs = []
        for name in names:
            ref = self._inputs.pop(name, None) or ray.put(Path(name).read_bytes())
            self._inputs[name] = ref  # newest last; the oldest leave the store first
            refs.append(ref)
        while len(self._inputs) > INPUT_CACHE:
            self._inputs.popitem(last=False)
        done = [path.read_bytes() for path in gallery.resume_frames(run.id)] if run.is_clip else []
        return (run, names, content_shape(gallery, run), self.cpus_per_job, len(done), *refs, *done)

    def _follow(self, run: Run, on_gpu: bool, args: tuple) -> None:
        """One run on the cluster, from dispatch to its end in the gallery (a thread each)."""
        try:
            with Gallery(self.data_dir) as gallery:
                self._follow_in(gallery, run, on_gpu, args)
        except Exception:
            log.exception("run %s on the cluster", run.id)
            with Gallery(self.data_dir) as gallery:
                gallery.mark_interrupted(run.id, "The head lost track of this run; re-queue it to run it again.")
        finally:
            with self._lock:
                self._jobs.pop(run.id, None)
            self.wake()

    def _receive(self, gallery: Gallery, run: Run, message: tuple) -> list | None:
        """One message from a run's task into the gallery; the (Result, Clip) when it is the result."""
        kind, *body = message
        if kind == "node":
            gallery.record_worker(run.id, f"{self.name} on {body[0]}")
        elif kind == "progress":
            iteration, total, losses, previews, where = body
            gallery.record_progress(run.id, iteration, total, losses, previews, **where)
        elif kind == "frame":
            gallery.record_frame(run.id, *body)
        else:
            return body
        return None

    def _follow_in(self, gallery: Gallery, run: Run, on_gpu: bool, args: tuple) -> None:
        import ray
        from ray.exceptions import RayError, RayTaskError, TaskCancelledError

        resources = {"num_gpus": 1, "num_cpus": 1} if on_gpu else {"num_cpus": self.cpus_per_job}
        # No retries: a job runs to completion at most once; a lost one is the user's to re-queue.
        stream = self._task.options(num_returns="streaming", max_retries=0, **resources).remote(*args)
        result: list | None = None  # the (Result, Clip) the task sent last
        cancelled: float | None = None  # when ray.cancel was sent,
        killed: float | None = None  # and when with force
        try:
            while True:
                # Not blocked on the next message: a job may send none for minutes (a large
                # image's set-up or iteration on a CPU, or a node stuck in a driver), and a
                # cancel or a stop must reach it all the same. Once cancelled, the stream counts as
                # ready at once but reading it waits for the task's end: wait for that end instead.
                ready, _ = ray.wait([stream] if cancelled is None else [stream.completed()], timeout=WATCH_S)
                if ready:
                    try:
                        ref = next(stream)
                    except StopIteration:
                        break
                    result = self._receive(gallery, run, ray.get(ref)) or result
                if cancelled is None and (self._stop.is_set() or gallery.cancel_requested(run.id)):
                    ray.cancel(stream)  # the engine stops at its next look (engine.transfer)
                    cancelled = time.monotonic()
                elif cancelled is not None and killed is None and time.monotonic() - cancelled > self.stop_s:
                    # Still going: the engine never got to look (a node stuck in a driver). Its process goes.
                    log.warning("run %s did not stop within %.0f s of its cancel; killing its task", run.id,
                                self.stop_s)
                    ray.cancel(stream, force=True)
                    killed = time.monotonic()
                elif killed is not None and time.monotonic() - killed > self.stop_s:
                    # Its process does not even answer the kill (a frozen node): the run ends here all
                    # the same, and nothing the task may still send is read.
                    log.warning("run %s: its task has not ended %.0f s after the kill; recorded as stopped",
                                run.id, self.stop_s)
                    break
        except TaskCancelledError:
            cancelled = cancelled or time.monotonic()
        except RayTaskError as e:  # the job itself failed on the node: its own error
            self._record_failure(gallery, run, e.cause if isinstance(e.cause, Exception) else e)
            return
        except RayError as e:  # the node, its worker process or the cluster went away
            if killed is not None:  # as it was told to
                self._record_stopped(gallery, run)
                return
            gallery.mark_interrupted(run.id, f"The cluster lost this run ({_first_line(e)}); re-queue it "
                                             f"to run it again.")
            return
        if result is not None:
            self._save(gallery, run, *result)
        elif cancelled is not None:
            self._record_stopped(gallery, run)
        else:  # the task's stream ended without a result: never by design, but not a result to save
            gallery.mark_interrupted(run.id, "The cluster ended this run without its result; re-queue it to run it again.")
