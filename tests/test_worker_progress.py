"""The worker's progress policy (worker/progress.py) writing into a real gallery."""
from __future__ import annotations

from pathlib import Path

from PIL import Image

from gallery import Gallery
from support.runs import tiny_params
from worker.progress import ProgressWriter


def test_progress_is_throttled_but_keeps_the_last(data_dir: Path) -> None:
    with Gallery(data_dir) as g:
        rid = g.submit(tiny_params())
        g.claim(rid, "t")
        writer = ProgressWriter(g, rid, interval=3600)
        frames = [Image.new("RGB", (32, 24), (i, 0, 0)) for i in range(10)]
        written = [writer.report(i, 10, {"total": 10.0 - i}, frames[i - 1]) for i in range(1, 11)]
        assert written[0] and written[-1] and sum(written) == 2
        run = g.get(rid)
        assert (run.iteration, run.total, run.losses) == (10, 10, {"total": 0.0})
        # The preview of iteration 10 arrived with the final write; 2..9 were superseded.
        assert [i for i, _ in g.previews(rid)] == [1, 10]


def test_flush_writes_where_a_run_stopped(data_dir: Path) -> None:
    with Gallery(data_dir) as g:
        rid = g.submit(tiny_params(iterations=50))
        g.claim(rid, "t")
        writer = ProgressWriter(g, rid, interval=3600)
        for i in range(1, 8):
            writer.report(i, 50, {"total": float(i)}, Image.new("RGB", (32, 24)) if i == 5 else None)
        assert g.get(rid).iteration == 1
        assert writer.flush() and not writer.flush()  # nothing left the second time
        assert g.get(rid).iteration == 7 and [i for i, _ in g.previews(rid)] == [5]
