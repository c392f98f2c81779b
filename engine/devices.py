"""The devices a run may ask for, and the GPUs this machine has, told without torch.

A device is `auto` (a GPU when there is one, else the CPU), `cpu`, `cuda` (any GPU) or `cuda:N`
(GPU N). Params, the form, the workers and the cluster worker all take the vocabulary from here,
so a name one of them accepts is one every other knows. Whether GPU N exists is a question for
the machine that runs the job (engine.transfer.device_name); here N is only spelt.

N runs from 0 to MAX_GPUS - 1, written without leading zeros. The queue matches a job's device
to a worker's by its name, so each GPU has exactly one spelling ("cuda:01" would wait for a
worker that never comes), and the names are few enough for a worker to list them all when it
claims a job. MAX_GPUS is 100: what Params has accepted since cuda:N was added, so no run stored
in a gallery or a zip becomes invalid, and far beyond the GPUs one machine holds.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

DEVICES = ("auto", "cpu", "cuda")  # and "cuda:N", one GPU of several
MAX_GPUS = 100
# Every device name: N in 0..99 without leading zeros (MAX_GPUS; tests/test_devices.py holds
# the two together).
PATTERN = re.compile(r"auto|cpu|cuda(?::(?:0|[1-9][0-9]?))?")


def is_device(value: object) -> bool:
    """auto, cpu, cuda (any GPU), or cuda:N (that GPU)."""
    return isinstance(value, str) and PATTERN.fullmatch(value) is not None


def gpu_device(index: int) -> str:
    """The name of GPU `index`: "cuda:1"."""
    return f"cuda:{index}"


def gpu_index(device: str) -> int | None:
    """N for "cuda:N"; None for the other devices (auto, cpu, and cuda: any GPU)."""
    name, _, index = device.partition(":")
    return int(index) if name == "cuda" and index else None


def gpu_count(dev: Path = Path("/dev")) -> int:
    """NVIDIA GPUs this process may use, told without torch: $CUDA_VISIBLE_DEVICES when set,
    else the driver's /dev/nvidiaN files (`dev`: where to look for them)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and not d.strip().startswith("-")])
    return len(list(dev.glob("nvidia[0-9]*")))
