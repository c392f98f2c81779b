"""`python -m worker`: run queues and processes a job in this process; work processes the queue."""
from __future__ import annotations

from pathlib import Path

import pytest

from gallery import Gallery
from harness.paths import CONTENT, STYLE
from worker.cli import main


def test_run_queues_processes_and_reports(data_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--data", str(data_dir), "run", str(CONTENT), str(STYLE), "--size", "32", "--iterations", "3",
                 "--device", "cpu", "--no-multiscale", "--title", "now"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("run 1 queued\n") and "run 1: [" in out and "3/3" in out
    with Gallery(data_dir) as g:
        run = g.get(1)
        assert (run.status, run.title, run.result_path.is_file()) == ("done", "now", True)


def test_bad_input_exits_2_with_one_line(data_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--data", str(data_dir), "run", str(CONTENT), "missing.jpg"]) == 2
    err = capsys.readouterr().err
    assert "no such file: missing.jpg" in err and err.count("\n") == 1
    with Gallery(data_dir) as g:
        assert g.count_runs() == 0


def test_run_styles_a_gif_frame_by_frame(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from engine.clips import read_clip, write_gif
    from support.images import pan

    gif = write_gif(pan(3), tmp_path / "pan.gif")
    assert main(["--data", str(data_dir), "run", str(gif), str(STYLE), "--size", "32", "--iterations", "3",
                 "--frame-iterations", "2", "--device", "cpu", "--no-multiscale"]) == 0
    out = capsys.readouterr().out
    assert "frame 1/3 3/3" in out and "frame 3/3 2/2" in out
    with Gallery(data_dir) as g:
        assert len(read_clip(g.get(1).animation_path).frames) == 3
