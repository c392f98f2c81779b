"""What one job needs wherever it runs (a local worker, a Ray cluster's node): how much memory
its device has, its params on that device once it fits, the engine run on it, and the name a
worker goes by in the runs it claims."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine import memory
from engine.params import Params
from gallery import Gallery, Run
from gallery.procs import HOST

ProgressHook = Callable[[Any], object]  # what it returns is not looked at


def worker_name(label: str, pid: int | None, host: str = HOST) -> str:
    """How a worker is named in the runs it claims (Run.worker) and in the sidebar: "cpu@lab-pc:4242";
    its `label` is its device, or "ray" for a cluster's."""
    return f"{label}@{host}:{pid}"


def runs_on(run_worker: str | None, name: str | None) -> bool:
    """Whether a run's recorded worker is the worker `name`, or one of its nodes (a cluster
    worker's runs say "ray@host:1 on node 1a2b3c4d …")."""
    if not run_worker or not name:
        return False
    return run_worker == name or run_worker.startswith(f"{name} ")


class MemoryRefused(RuntimeError):
    """The job would not fit in the device's free memory; the message says what would."""


def available_memory(device: str) -> int | None:
    """Free bytes on `device` ("cpu" or "cuda[:n]"), or None when it cannot be told."""
    if device.startswith("cuda"):
        import torch
        if not torch.cuda.is_available():
            return None  # the engine says so, in its own words
        from engine.tiled import free_bytes

        return free_bytes(torch.device(device))
    return memory.cpu_available_bytes()


def content_shape(gallery: Gallery, run: Run) -> tuple[int, int] | None:
    """The run's content image's (width, height), when the gallery has it."""
    found = run.content_sha256 and gallery.get_input_or_none(run.content_sha256)
    return (found.width, found.height) if found and found.width else None


def params_on_device(params: Params, device: str, shape: tuple[int, int] | None, frames: int = 1,
                     memory_probe: Callable[[str], int | None] = available_memory,
                     memory_budget: int | None = None) -> Params:
    """`params` on a concrete device ("auto" becomes what this machine has), after checking the
    job fits in its free memory (within `memory_budget`), in tiles if need be, and a GPU run's
    L-BFGS history and a clip of `frames` in the host's (MemoryRefused says what would)."""
    if device == "auto":
        from engine.transfer import device_name  # torch: only now, in the worker
        device = device_name(device)
    params = params.with_changes(device=device)
    host = memory_probe("cpu") if device != "cpu" else None
    reason = memory.refusal(params, memory.within_budget(memory_probe(device), memory_budget), device, shape,
                            frames, host_available=host)
    if not reason and device != "cpu":
        reason = memory.clip_refusal(params, host, shape, frames)
    if reason:
        raise MemoryRefused(reason)
    return params


def run_engine(engine: Any, frames: Any, run: Run, params: Params, on_progress: ProgressHook,
               should_cancel: Callable[[], bool], memory_budget: int | None = None) -> tuple[Any, Any]:
    """The engine on a claimed run, with `params` on a device: (its Result, the styled Clip or
    None for a still). A clip is styled frame by frame (worker/clip_job.py), each finished frame
    kept by `frames` (the gallery, or on a cluster's node what sends them to the head).
    `memory_budget`: bytes the engine may use ($STUDIO_MEMORY_BUDGET without it)."""
    if run.is_clip:
        from worker.clip_job import style_clip_run  # torch, like the engine

        return style_clip_run(frames, run, params, on_progress, should_cancel)
    return engine.run(params, on_progress=on_progress, should_cancel=should_cancel, memory_budget=memory_budget), None
