"""Estimates from this machine's finished runs: a run's expected duration, a queued run's start."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from gallery import Gallery, estimates
from support.runs import finished_run, tiny_params

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)


def set_duration(g: Gallery, rid: int, seconds: float) -> None:
    g.db.execute("UPDATE runs SET duration = ? WHERE id = ?", [seconds, rid])


def test_no_finished_run_no_estimate(data_dir) -> None:
    with Gallery(data_dir) as g:
        assert estimates.measured_speed(g) is None
        rid = g.submit(tiny_params())
        assert estimates.expected_starts(g, [], [g.get(rid)], now=NOW) == {rid: None}


def test_speed_is_the_median_over_finished_runs_per_device(data_dir) -> None:
    with Gallery(data_dir) as g:
        p = tiny_params(size=64, iterations=10)
        aspect = estimates.aspect_of(g, g.get(finished_run(g, params=p)).content_sha256)
        assert 0 < aspect < 1  # tubingen is landscape
        for rid, seconds in zip([1, finished_run(g, params=p), finished_run(g, params=p)], [10.0, 30.0, 20.0]):
            set_duration(g, rid, seconds)
        speed = estimates.measured_speed(g, "cpu")
        assert speed.runs == 3
        assert speed.seconds(p, aspect) == pytest.approx(20.0)
        assert speed.seconds(p.with_changes(size=128), aspect) == pytest.approx(80.0)  # 4× the pixels
        assert estimates.measured_speed(g, "cuda") is None


@pytest.mark.parametrize("workers", [1, 2])
def test_queued_runs_start_after_the_work_ahead(data_dir, workers: int) -> None:
    with Gallery(data_dir) as g:
        p = tiny_params(size=64, iterations=10, multiscale=False)
        set_duration(g, finished_run(g, params=p), 20.0)
        running = g.submit(p)
        g.claim(running, "test")
        g.record_progress(running, 5, 10, {"total": 1.0})  # half done: 10 s left
        first, second = g.submit(p), g.submit(p)
        starts = estimates.expected_starts(g, [g.get(running)], [g.get(first), g.get(second)], workers, now=NOW)
        if workers == 1:
            assert starts == {first: NOW + timedelta(seconds=10), second: NOW + timedelta(seconds=30)}
        else:
            assert starts == {first: NOW, second: NOW + timedelta(seconds=10)}


def test_a_worker_running_several_jobs_counts_as_that_many(data_dir) -> None:
    # One ray worker with three jobs on a cluster and more queued: the cluster has room for three.
    with Gallery(data_dir) as g:
        p = tiny_params(size=64, iterations=10, multiscale=False)
        set_duration(g, finished_run(g, params=p), 20.0)
        running = [g.submit(p) for _ in range(3)]
        for rid, done in zip(running, (5, 2, 8)):  # 10, 16 and 4 s left
            g.claim(rid, "ray@head:1")
            g.record_progress(rid, done, 10, {"total": 1.0})
        first, second = g.submit(p), g.submit(p)
        starts = estimates.expected_starts(g, [g.get(r) for r in running], [g.get(first), g.get(second)],
                                           workers=1, now=NOW)
        assert starts == {first: NOW + timedelta(seconds=4), second: NOW + timedelta(seconds=10)}


def test_the_create_page_says_how_long_generate_will_take(data_dir) -> None:
    from app_pages.create import estimate_line

    with Gallery(data_dir) as g:
        p = tiny_params(size=64, iterations=10)
        assert estimate_line(g, [p]) == "Estimated time: unknown until a run has finished on this machine."
        rid = finished_run(g, params=p)
        set_duration(g, rid, 20.0)
        stored = g.get(rid).params  # the content as the Create page names it: a stored input
        assert estimate_line(g, [stored, stored.with_changes(seed=1)]) == \
            "Estimated time: about 40 s, from this machine's last 1 finished run."
