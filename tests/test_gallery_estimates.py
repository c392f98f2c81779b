"""Estimates from this machine's finished runs (gallery/estimates.py): a run's expected
duration as a fixed part plus per-step and per-pixel rates, a queued run's start."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from gallery import Gallery, estimates
from gallery.times import iso
from support.runs import finished_run, tiny_params

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def set_times(g: Gallery, rid: int, wall: float, optimize: float | None = None) -> None:
    """A finished run that took `wall` s from claimed to saved, `optimize` of them optimising."""
    g.db.execute("UPDATE runs SET started = ?, finished = ?, duration = ?, timings_json = ? WHERE id = ?",
                 [iso(NOW - timedelta(seconds=wall)), iso(NOW), wall,
                  json.dumps({} if optimize is None else {"optimize": optimize}), rid])


def start(g: Gallery, rid: int, seconds_ago: float, iteration: int) -> None:
    g.claim(rid, "test")
    g.db.execute("UPDATE runs SET started = ? WHERE id = ?", [iso(NOW - timedelta(seconds=seconds_ago)), rid])
    g.record_progress(rid, iteration, g.get(rid).total, {"total": 1.0})


def test_no_finished_run_no_estimate(data_dir) -> None:
    with Gallery(data_dir) as g:
        assert estimates.measured_speed(g) is None
        rid = g.submit(tiny_params())
        assert estimates.expected_starts(g, [], [g.get(rid)], now=NOW) == {rid: None}


def test_a_fixed_part_and_two_rates_from_runs_of_two_sizes(data_dir) -> None:
    """Before, the speed was seconds per pixel-iteration alone: from a 64 px run of 20 s it said
    a 128 px run takes 80 s, however much of the 20 s was starting up."""
    with Gallery(data_dir) as g:
        small, large = tiny_params(size=64, iterations=10), tiny_params(size=128, iterations=10)
        aspect = estimates.aspect_of(g, g.get(finished_run(g, params=small)).content_sha256)
        assert 0 < aspect < 1  # tubingen is landscape
        finished_run(g, params=large)
        # made-up rates: 0.05 s a step, 2e-5 s a pixel-iteration; 8 s to start and save
        optimize = {p: 0.05 * estimates.steps_of(p) + 2e-5 * p.work(aspect) for p in (small, large)}
        set_times(g, 1, 8 + optimize[small], optimize[small])
        set_times(g, 2, 8 + optimize[large], optimize[large])
        speed = estimates.measured_speed(g, "cpu")
        assert speed.runs == 2 and speed.fixed == pytest.approx(8.0, abs=0.01)  # timestamps keep milliseconds
        assert (speed.per_step, speed.per_work) == (pytest.approx(0.05), pytest.approx(2e-5))
        third = tiny_params(size=96, iterations=30)
        expected = 8 + 0.05 * estimates.steps_of(third) + 2e-5 * third.work(aspect)
        assert speed.seconds(third, aspect) == pytest.approx(expected, rel=1e-3)
        low, high = speed.range(third, aspect)
        # the floor: ±15 %
        assert low == pytest.approx(expected * 0.85, rel=1e-3) and high == pytest.approx(expected * 1.15, rel=1e-3)
        assert estimates.measured_speed(g, "cuda") is None


def test_one_run_gives_a_wide_range_and_runs_without_timings_count_whole(data_dir) -> None:
    with Gallery(data_dir) as g:
        p = tiny_params(size=64, iterations=10)
        set_times(g, finished_run(g, params=p), 20.0)  # an import: no engine timings
        speed = estimates.measured_speed(g)
        aspect = estimates.aspect_of(g, g.get(1).content_sha256)
        assert speed.fixed == 0 and speed.seconds(p, aspect) == pytest.approx(20, rel=1e-3)
        assert speed.spread == estimates.ONE_RUN_SPREAD


@pytest.mark.parametrize("workers", [1, 2])
def test_queued_runs_start_after_the_work_ahead(data_dir, workers: int) -> None:
    with Gallery(data_dir) as g:
        p = tiny_params(size=64, iterations=10, multiscale=False)
        set_times(g, finished_run(g, params=p), 20.0, 20.0)
        running = g.submit(p)
        start(g, running, seconds_ago=10, iteration=5)  # half done in 10 s: 10 s left
        first, second = g.submit(p), g.submit(p)
        starts = estimates.expected_starts(g, [g.get(running)], [g.get(first), g.get(second)], workers, now=NOW)
        if workers == 1:
            assert starts == {first: NOW + timedelta(seconds=10), second: NOW + timedelta(seconds=30)}
        else:
            assert starts == {first: NOW, second: NOW + timedelta(seconds=10)}


def test_a_waiting_run_never_starts_before_the_running_one_says_it_ends(data_dir) -> None:
    """Before: running #3 showed "ETA 1 min 18 s" while #4, waiting behind it, said "Starts in about
    18 s": the start came from the other runs' speed, the ETA from #3's own progress."""
    with Gallery(data_dir) as g:
        p = tiny_params(size=64, iterations=10, multiscale=False)
        set_times(g, finished_run(g, params=p), 20.0, 20.0)  # the model: 20 s a run
        running = g.submit(p)
        start(g, running, seconds_ago=78, iteration=5)  # but this one is slow: 78 s for half of it
        waiting = g.submit(p)
        starts = estimates.expected_starts(g, [g.get(running)], [g.get(waiting)], now=NOW)
        assert starts[waiting] == NOW + timedelta(seconds=78)
        assert estimates.seconds_left(g, g.get(running), estimates.measured_speed(g), NOW) == 78


def test_a_worker_running_several_jobs_counts_as_that_many(data_dir) -> None:
    # One ray worker with three jobs on a cluster and more queued: the cluster has room for three.
    with Gallery(data_dir) as g:
        p = tiny_params(size=64, iterations=10, multiscale=False)
        set_times(g, finished_run(g, params=p), 20.0, 20.0)
        running = [g.submit(p) for _ in range(3)]
        for rid, done in zip(running, (5, 2, 8)):  # 2 s a step so far: 10, 16 and 4 s left
            start(g, rid, seconds_ago=2 * done, iteration=done)
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
        set_times(g, rid, 20.0, 10.0)
        stored = g.get(rid).params  # the content as the Create page names it: a stored input
        assert estimate_line(g, [stored, stored.with_changes(seed=1)]) == \
            "Estimated time: 20–60 s, from this machine's last 1 finished run."


@pytest.mark.slow
def test_two_real_runs_predict_a_third_of_another_size_and_length(data_dir) -> None:
    """The real engine and worker on this machine: after a 64 px and a 128 px run, a 96 px run
    of twice the iterations takes within ±35 % of what the estimate's middle says."""
    from harness.waiting import wait_for
    from support.fake_engine import settled
    from worker import Worker

    w = Worker(data_dir, "cpu", poll_interval=0.05).start()
    try:
        with Gallery(data_dir) as g:
            for size in (64, 128):
                g.submit(tiny_params(size=size, iterations=20, multiscale=False, seed=size))
            wait_for(lambda: settled(g, 2), 300, "the two measured runs")
            third = tiny_params(size=96, iterations=40, multiscale=False, seed=3)
            speed = estimates.measured_speed(g, "cpu")
            rid = g.submit(third)
            predicted = estimates.run_seconds(g, g.get(rid), speed)
            wait_for(lambda: settled(g, 3), 300, "the third run")
            run = g.get(rid)
            took = (run.finished - run.started).total_seconds()
            print(f"\nestimate {predicted:.2f} s, took {took:.2f} s; {speed}")
            assert run.status == "done" and abs(predicted - took) <= 0.35 * took
    finally:
        w.stop(timeout=30)
