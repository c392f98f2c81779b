"""Runs queued jobs: the local claim loop (`Worker`, worker/local.py) and what one job needs
wherever it runs (worker/job.py); a Ray cluster's worker (worker/cluster.py), the app's worker
processes (worker/supervisor.py), their command line (worker/cli.py). Nothing here imports torch:
the engine is loaded when the first job starts."""
from worker.job import MemoryRefused, available_memory, content_shape, params_on_device, run_engine, worker_name
from worker.local import Worker

__all__ = ["MemoryRefused", "Worker", "available_memory", "content_shape", "params_on_device", "run_engine",
           "worker_name"]
