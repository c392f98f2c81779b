"""Clip runs through the gallery and the worker with the real engine at 64 px on the CPU: the
animation keeps its frames and timing, progress says which frame, a run queued again after an
interruption computes only the frames it lacks, and a damaged video fails alone."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.clips import read_clip, write_gif
from engine.images import ImageError
from engine.memory import clip_bytes, estimate_bytes
from gallery import Gallery
from gallery.paths import input_sha256
from harness.paths import CONTENT, ROOT
from harness.waiting import wait_for
from support.fake_engine import settled
from support.images import pan
from support.runs import files_under, named_files, tiny_params
from worker import Worker

DURATIONS = (90, 110, 130)


def clip_params(gif: Path, **changes):
    return tiny_params(content=gif, **{"size": 64, "iterations": 4, "frame_iterations": 2, **changes})


def run_now(g: Gallery, rid: int, on_progress=None, worker: Worker | None = None) -> str:
    worker = worker or Worker(g.data_dir, "cpu")
    run = g.claim(rid, worker.name)
    assert run is not None
    return worker.run_job(g, run, on_progress)


def assert_intact(g: Gallery) -> None:
    assert g.remove_orphans() == []
    assert files_under(g.data_dir) == named_files(g)
    assert g.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_clip_run_keeps_its_frames_and_timing(data_dir: Path, tmp_path: Path) -> None:
    gif = write_gif(pan(3, DURATIONS), tmp_path / "pan.gif")
    with Gallery(data_dir) as g:
        stored = g.add_input(gif.read_bytes(), "pan.gif", "content")
        assert (stored.frames, stored.duration_ms, stored.format, stored.width) == (3, 330, "GIF", 96)
        assert stored.path.read_bytes() == gif.read_bytes()  # the upload as it came
        rid = g.submit(clip_params(gif))
        assert g.get(rid).is_clip and g.get(rid).frames == 3
        seen: set[tuple[int, int, int]] = set()

        def watch(p) -> None:
            if p.inner.iteration == p.inner.total:  # the last iteration of a frame is always written
                run = g.get(rid)
                seen.add((run.frame, run.iteration, run.total))

        assert run_now(g, rid, watch) == "done"
        assert seen == {(1, 4, 4), (2, 2, 2), (3, 2, 2)}  # frame k of 3, iteration i of t within it
        run = g.get(rid)
        styled = read_clip(run.animation_path)
        assert len(styled.frames) == 3 and styled.durations_ms == list(DURATIONS) and styled.size == (64, 48)
        assert read_clip(run.gif_path).durations_ms == list(DURATIONS)
        assert Image.open(run.result_path).size == (64, 48) and run.thumb_path.is_file()
        first = np.asarray(Image.open(g.frames(rid)[0]), float)
        assert np.abs(first - np.asarray(Image.open(run.result_path), float)).max() == 0
        assert len(g.frames(rid)) == 3 and run.frame == 0
        # The job's whole time: the frames' runs, and the decoding and motion between them.
        assert run.duration == run.timings["total"] > run.timings["setup"] + run.timings["optimize"] + 0.005
        assert_intact(g)


def test_an_interrupted_clip_continues_after_its_finished_frames(data_dir: Path, tmp_path: Path) -> None:
    gif = write_gif(pan(4), tmp_path / "pan.gif")
    with Gallery(data_dir) as g:
        first = g.submit(clip_params(gif))
        worker = Worker(data_dir, "cpu")

        def stop_in_frame_3(p) -> None:
            if p.frame == 3:
                worker.stop()  # as SIGTERM does: the job ends interrupted

        assert run_now(g, first, stop_in_frame_3, worker) == "interrupted"
        kept = [path.read_bytes() for path in g.frames(first)]
        assert len(kept) == 2
        again = g.requeue(first)
        computed: set[int] = set()
        assert run_now(g, again, lambda p: computed.add(p.frame)) == "done"
        assert computed == {3, 4}  # frames 1 and 2 came from the interrupted run
        assert [path.read_bytes() for path in g.frames(again)[:2]] == kept
        assert len(read_clip(g.get(again).animation_path).frames) == 4
        # As if it had never stopped: the same frames as a run straight through.
        straight = g.submit(clip_params(gif))
        assert run_now(g, straight) == "done"
        for resumed, whole in zip(g.frames(again), g.frames(straight)):
            assert np.array_equal(np.asarray(Image.open(resumed)), np.asarray(Image.open(whole)))
        g.delete(first)  # the new run has its own copies
        assert len(g.frames(again)) == 4 and all(path.is_file() for path in g.frames(again))
        assert_intact(g)


@pytest.mark.kill
def test_a_killed_worker_s_clip_continues_after_its_finished_frames(data_dir: Path, tmp_path: Path) -> None:
    gif = write_gif(pan(4), tmp_path / "pan.gif")
    with Gallery(data_dir) as g:
        first = g.submit(clip_params(gif, frame_iterations=60))
        proc = subprocess.Popen([sys.executable, "-m", "worker", "--data", str(data_dir), "work", "--device", "cpu"],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: len(g.frames(first)) >= 2, 120, "two finished frames", interval=0.05)
        finally:
            proc.kill()
            proc.wait()
        assert g.recover_interrupted() == [first]
        had = len(g.frames(first))
        assert 2 <= had < 4
        again = g.requeue(first)
        computed: set[int] = set()
        assert run_now(g, again, lambda p: computed.add(p.frame)) == "done"
        assert computed == set(range(had + 1, 5))
        assert_intact(g)


def video(path: Path, frames: int = 4) -> Path:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 72))
    for frame in pan(frames).frames:
        writer.write(cv2.cvtColor(np.asarray(frame), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def test_a_damaged_video_fails_alone(data_dir: Path, tmp_path: Path) -> None:
    mp4 = video(tmp_path / "pan.mp4")
    with Gallery(data_dir) as g:
        with pytest.raises(ImageError, match="damaged|cut short|could not be opened"):
            g.add_input(mp4.read_bytes()[: mp4.stat().st_size // 3], "cut.mp4", "content")
        broken = g.submit(clip_params(mp4))
        assert g.get(broken).frames == 4 and g.get_input(g.get(broken).content_sha256).format == "MP4"
        assert input_sha256(g.get(broken).params.content) == g.get(broken).content_sha256  # .mp4 names an input
        # The stored copy is cut short after it was checked (a disk fault).
        path = g.input_path(g.get(broken).content_sha256)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
        still = g.submit(tiny_params(content=CONTENT, seed=1))
        worker = Worker(data_dir, "cpu", poll_interval=0.05).start()
        try:
            wait_for(lambda: settled(g, 2), 60, "both jobs")
        finally:
            worker.stop(timeout=30)
        failed = g.get(broken)
        assert failed.status == "failed" and "Traceback" not in failed.error
        assert "damaged" in failed.error or "cut short" in failed.error or "could not be opened" in failed.error
        assert g.get(still).status == "done" and worker.last_error is None
        assert_intact(g)


def test_a_clip_that_would_not_fit_with_its_frames_is_refused(data_dir: Path, tmp_path: Path) -> None:
    gif = write_gif(pan(3, DURATIONS), tmp_path / "pan.gif")
    with Gallery(data_dir) as g:
        rid = g.submit(clip_params(gif))
        shape = (g.get_input(g.get(rid).content_sha256).width, g.get_input(g.get(rid).content_sha256).height)
        on_cpu = g.get(rid).params.with_changes(device="cpu")
        # Room for one frame's run, not for the three frames held beside it.
        room = estimate_bytes(on_cpu, shape) + clip_bytes(on_cpu, shape, 3) // 2
        assert run_now(g, rid, worker=Worker(data_dir, "cpu", memory_probe=lambda device: room)) == "failed"
        assert g.get(rid).error.startswith("Not enough memory: this run needs about ")
        assert g.get(rid).iteration in (None, 0)  # refused before the engine started
        assert_intact(g)
