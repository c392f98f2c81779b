"""`python -m bench.child MODULE ARGS...`: runs `python -m MODULE ARGS...` and writes its peak memory
to the file named by $BENCH_PEAK_FILE, as JSON: {"rss_mb": ..., "cuda_mb": ...}.

Measured from inside, because the rusage a parent gets from wait4 includes the parent's own
resident set at the time of the fork/exec (Linux carries the old address space's high-water
mark over exec), which made every child look as big as the benchmark process.
"""
from __future__ import annotations

import json
import os
import runpy
import sys
from pathlib import Path

PEAK_FILE_ENV = "BENCH_PEAK_FILE"


def status_mb(field: str) -> float | None:
    """One of this process's memory figures from /proc/self/status ("VmHWM", "VmRSS"), in MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def peak_rss_mb() -> float | None:
    return status_mb("VmHWM")


def main() -> None:
    module = sys.argv[1]
    sys.argv = [module] + sys.argv[2:]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        torch = sys.modules.get("torch")
        cuda_mb: float | None = None
        if torch is not None and torch.cuda.is_initialized():
            cuda_mb = torch.cuda.max_memory_allocated() / 2**20
        peaks = {"rss_mb": peak_rss_mb(), "cuda_mb": cuda_mb}
        if os.environ.get(PEAK_FILE_ENV):
            Path(os.environ[PEAK_FILE_ENV]).write_text(json.dumps(peaks))


if __name__ == "__main__":
    main()
