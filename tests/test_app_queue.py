"""AppTest of the Queue page: everyone's jobs with status, position, progress and owner; people
cancel their own; interrupted jobs can be re-queued by anyone."""
from __future__ import annotations

from app_pages.queue import queue_rows
from gallery import RunFilter
from support.app import app, assert_ok, play_worker, small_params

QUEUE = "app_pages/queue.py"


def test_queue_rows_order_positions_and_permissions(studio):
    first = studio.submit(small_params(), owner="alice001")
    second = studio.submit(small_params(), owner="bob00002")
    third = studio.submit(small_params(), owner="alice001")
    play_worker(studio, until="running")  # takes `first`
    active, ended = queue_rows(studio, "alice001")
    assert [(r.run.id, r.position) for r in active] == [(first, None), (second, 1), (third, 2)]
    assert [r.can_cancel for r in active] == [True, False, True]
    assert ended == []


def test_queue_page_shows_all_sessions_and_cancels_only_your_own(studio):
    running = studio.submit(small_params(), owner="alice001")
    theirs = studio.submit(small_params(), owner="bob00002")
    mine = studio.submit(small_params(), owner="alice001")
    play_worker(studio, until="running", iteration=3)
    at = app(QUEUE, owner="alice001")
    assert_ok(at)
    assert [t.value for t in at.title] == ["Queue"]
    text = " ".join(c.value for c in at.caption)
    assert "Owner: **alice001 (you)**" in text and "Owner: bob00002" in text
    links = {link.value: link.proto.query_string for link in at.get("page_link")}
    assert links[f"**#{theirs}** tubingen × starry\\_night"] == f"run={theirs}"  # each row opens its run
    assert any(p.proto.text.startswith("Running · 3/10") for p in at.get("progress"))
    keys = {b.key for b in at.button}
    assert {f"qcancel-{running}", f"qcancel-{mine}"} <= keys and f"qcancel-{theirs}" not in keys
    at.button(key=f"qcancel-{mine}").click().run()
    assert studio.get(mine).status == "cancelled"
    at.button(key=f"qcancel-{running}").click().run()
    assert studio.get(running).cancel_requested
    # the cancelled job moved to "recently ended", with a re-queue button for its owner
    keys = {b.key for b in at.button}
    assert f"qrequeue-{mine}" in keys and f"qcancel-{mine}" not in keys
    assert at.button(key=f"qrequeue-{mine}").label == "Requeue"


def test_interrupted_jobs_can_be_requeued_by_anyone(studio):
    rid = studio.submit(small_params(), owner="gone0001")
    studio.claim_next("old-worker")
    studio.mark_interrupted(rid, "Interrupted: the server restarted.")
    at = app(QUEUE, owner="someone1")
    assert "**Interrupted**" in " ".join(c.value for c in at.caption)
    at.button(key=f"qrequeue-{rid}").click().run()
    assert_ok(at)
    requeued = studio.list_runs(RunFilter(status="queued"))
    assert len(requeued) == 1 and requeued[0].requeued_from == rid and requeued[0].owner == "gone0001"
