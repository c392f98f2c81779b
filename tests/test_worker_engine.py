"""The worker with the real engine (tiny sizes on the CPU): results, cancel, a broken input."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from engine import pngmeta
from gallery import Gallery
from harness.paths import CONTENT, STYLE, STYLE2
from harness.waiting import wait_for
from support.fake_engine import settled
from support.runs import tiny_params
from worker import Worker

GOLDEN_GATE = CONTENT.parent / "golden_gate.jpg"


@pytest.fixture
def real_worker(data_dir: Path):
    w = Worker(data_dir, "cpu", poll_interval=0.05).start()
    yield w
    w.stop(timeout=30)


def test_real_runs_cancel_and_a_broken_input(data_dir: Path, real_worker: Worker) -> None:
    with Gallery(data_dir) as g:
        broken = g.submit(tiny_params(content=GOLDEN_GATE, seed=1))
        # The stored copy is damaged after it was checked (a disk fault, a careless hand).
        g.input_path(g.get(broken).content_sha256).write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 64)
        done = g.submit(tiny_params(styles=(STYLE, STYLE2), preview_every=1, seed=2), title="real")
        slow = g.submit(tiny_params(iterations=5000, seed=3))
        wait_for(lambda: g.get(slow).iteration >= 2, 120, "the slow job's progress")
        g.request_cancel(slow)
        wait_for(lambda: settled(g, 3), 60, "three jobs")

        failed = g.get(broken)
        assert failed.status == "failed" and failed.error and "Traceback" not in failed.error

        run = g.get(done)
        assert run.status == "done" and run.iteration == run.total == 2
        assert set(run.losses) == {"total", "content", "style", "tv"}
        assert run.weights_name and run.weights_sha256 and (run.device_used, run.evaluation) == ("cpu", "winograd")
        image = Image.open(run.result_path)
        assert max(image.size) == 32
        assert json.loads(pngmeta.read_params_json(run.result_path))["seed"] == 2
        assert [i for i, _ in g.previews(done)] == [1, 2]
        assert Image.open(io.BytesIO(g.export_png(done))).size == image.size

        cancelled = g.get(slow)
        assert cancelled.status == "cancelled" and cancelled.iteration < cancelled.total
        assert real_worker.alive
