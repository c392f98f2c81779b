"""`python -m bench.child MODULE ARGS...`: runs `python -m MODULE ARGS...` and, when it used CUDA,
writes torch.cuda.max_memory_allocated to the file named by $BENCH_CUDA_PEAK_FILE, so that the
benchmark can report GPU peak memory for a CLI it does not control (pastiche's)."""
from __future__ import annotations

import os
import runpy
import sys

PEAK_FILE_ENV = "BENCH_CUDA_PEAK_FILE"


def main() -> None:
    module = sys.argv[1]
    sys.argv = [module] + sys.argv[2:]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        torch = sys.modules.get("torch")
        peak_file = os.environ.get(PEAK_FILE_ENV)
        if peak_file and torch is not None and torch.cuda.is_initialized():
            with open(peak_file, "w") as f:
                f.write(str(torch.cuda.max_memory_allocated()))


if __name__ == "__main__":
    main()
