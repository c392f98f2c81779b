"""`python -m worker`: process the queue, or queue a run and process it now.

    python -m worker [--data DIR] work [--device auto|cpu|cuda|cuda:N] [--threads N] [--parent-pid PID]
                                       [--memory-budget 4GB]
    python -m worker [--data DIR] work --ray ADDRESS|auto      (or $STUDIO_RAY: jobs go to a Ray cluster)
    python -m worker devices
    python -m worker [--data DIR] run CONTENT STYLE... [engine flags] [--memory-budget 4GB]

The worker sits above the gallery, so these live here rather than in `python -m gallery`
(which has `submit` to queue a run for whichever worker takes it). Bad input exits with
status 2 and one line on stderr.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Sequence

from engine.cli_args import OneLineParser, ProgressBar, add_memory_budget
from engine.devices import DEVICES, gpu_device, is_device
from engine.images import ImageError
from engine.params import ParamsError
from gallery import Gallery, GalleryError
from gallery.cli import UsageError, add_run_arguments, submit_from_args
from gallery.paths import DATA_ENV
from worker import Worker
from worker.cluster import RAY_ENV, ClusterUnreachable, ClusterWorker

EXIT_FAILED = 1
EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m worker", description="Runs the studio's queued jobs.")
    parser.add_argument("--data", metavar="DIR", help=f"data folder (default: ${DATA_ENV}, else ./data)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    work = commands.add_parser("work", help="process the queue until interrupted (Ctrl-C or SIGTERM)")
    work.add_argument("--device", type=_device, default="auto", metavar="|".join((*DEVICES, "cuda:N")),
                      help="take jobs asking for this device (or for auto); auto takes every job")
    work.add_argument("--threads", type=int, metavar="N",
                      help="torch's CPU threads (default: torch's own choice, every core)")
    work.add_argument("--parent-pid", type=int, metavar="PID",
                      help="stop when process PID ends (the app's server starts its workers so)")
    work.add_argument("--ray", metavar="ADDRESS", default=os.environ.get(RAY_ENV) or None,
                      help=f"send every job to the Ray cluster at ADDRESS (host:port, or auto for one started "
                           f"on this machine; default: ${RAY_ENV})")
    commands.add_parser("devices", help="list the devices this machine can run jobs on, one a line")
    run = commands.add_parser("run", help="queue a run and process it now, in this process")
    add_run_arguments(run)
    for command in (work, run):
        add_memory_budget(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "devices":
        print("\n".join(visible_devices()))
        return 0
    try:
        with Gallery(args.data) as gallery:
            return cmd_work(gallery, args) if args.command == "work" else cmd_run(gallery, args)
    except (UsageError, GalleryError, ParamsError, ImageError, ClusterUnreachable) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def cmd_run(gallery: Gallery, args: argparse.Namespace) -> int:
    run_id = submit_from_args(gallery, args)
    print(f"run {run_id} queued", flush=True)
    worker = Worker(gallery.data_dir, gallery.get(run_id).params.device, memory_budget=args.memory_budget)
    gallery.recover_interrupted()
    gallery.remove_orphans()
    run = gallery.claim(run_id, worker.name)
    if run is None:
        raise GalleryError(f"Run {run_id} was taken by another worker before this one could start it.")
    try:
        status = worker.run_job(gallery, run, on_progress=ProgressBar(run.params, sys.stdout, label=f"run {run_id}"))
    except KeyboardInterrupt:
        gallery.mark_cancelled(run_id)
        print(f"\nrun {run_id} cancelled", file=sys.stderr)
        return 130
    run = gallery.get(run_id)
    if status != "done":
        print(f"run {run_id} {status}: {run.error or ''}".rstrip(": "), file=sys.stderr)
        return EXIT_FAILED
    print(f"run {run_id} done in {run.duration:.1f}s: {run.result_path}")
    return 0


def cmd_work(gallery: Gallery, args: argparse.Namespace) -> int:
    if args.parent_pid:
        _die_with_parent()
    if args.ray:
        worker: Worker = ClusterWorker(gallery.data_dir, args.ray).start()
        where = f"the Ray cluster at {args.ray}"
    else:
        _prepare_torch(args.device, args.threads)
        worker = Worker(gallery.data_dir, args.device, memory_budget=args.memory_budget).start()
        where = args.device
    print(f"processing the queue of {gallery.data_dir} on {where}; Ctrl-C stops", flush=True)
    # Ctrl-C and SIGTERM (from the app, or the kernel when the app dies) end the current job as
    # interrupted rather than leave it running. The handler only sets a flag: an exception could
    # cut a second signal's wind-down short and leave torch running at exit, and a lock (an
    # Event's) could be held by the very wait the signal interrupted, which deadlocks.
    stopping: list[int] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda signum, frame: stopping.append(signum))
    while worker.alive and not stopping:
        if args.parent_pid and os.getppid() != args.parent_pid:
            break  # the parent is gone (and the kernel's signal did not come)
        time.sleep(0.5)
    worker.stop()
    return 0


def _device(value: str) -> str:
    if not is_device(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not one of {', '.join(DEVICES)} or cuda:N")
    return value


def visible_devices() -> list[str]:
    """Every GPU torch sees (cuda:0, cuda:1, …), else ["cpu"]."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return [gpu_device(i) for i in range(count)] or ["cpu"]


def _prepare_torch(device: str, threads: int | None) -> None:
    """Import torch now (not at the first job) and refuse a device this machine lacks, so a
    worker that cannot work says why at once."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: CUDA is not available on this machine "
                         f"(torch {torch.__version__}); use --device cpu or auto")
    if device.startswith("cuda:"):
        from engine.transfer import device_name

        # The engine's own check of the GPU index (a ParamsError: exit 2, its message in the log);
        # then, as the engine names its device but CUDA graphs and streams use the current one:
        torch.cuda.set_device(torch.device(device_name(device)))


def _die_with_parent() -> None:
    """Linux: have the kernel send SIGTERM when the parent dies, even by SIGKILL."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # elsewhere the loop's parent check does it, within half a second
