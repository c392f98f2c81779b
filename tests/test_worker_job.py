"""worker/job.py: what one job needs wherever it runs: its worker's name, its memory check."""
from __future__ import annotations

import pytest

from support.runs import tiny_params
from worker.job import MemoryRefused, params_on_device, runs_on, worker_name


def test_a_workers_name_and_the_runs_it_ran():
    name = worker_name("cpu", 4242, host="lab-pc")
    assert name == "cpu@lab-pc:4242"
    assert runs_on(name, name) and runs_on(f"{worker_name('ray', 7, 'head')} on node 1a2b3c4d", "ray@head:7")
    assert not runs_on("cpu@lab-pc:42424", name) and not runs_on(None, name) and not runs_on(name, None)


def test_a_job_that_cannot_fit_even_in_tiles_is_refused_with_a_size_that_would():
    p = tiny_params(size=4096)
    assert params_on_device(p, "cpu", (4096, 3072), memory_probe=lambda device: 64 * 1024**3).device == "cpu"
    with pytest.raises(MemoryRefused, match="the largest size that would fit is"):
        params_on_device(p, "cpu", (4096, 3072), memory_probe=lambda device: 3 * 1024**3)
    with pytest.raises(MemoryRefused):  # a budget counts as less memory
        params_on_device(p, "cpu", (4096, 3072), memory_probe=lambda device: 64 * 1024**3, memory_budget=3 * 1024**3)
