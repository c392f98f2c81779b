"""Queue: every session's jobs, live. People cancel their own; anyone can re-queue a job that a
restart interrupted (its owner may be long gone)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import streamlit as st

from app_pages import auth, common
from app_pages.jobs import STATUS_LABEL, job_view
from gallery import RunFilter, estimates
from gallery.db import ACTIVE, STATUSES

POLL_SECONDS = 2.0
RECENT = 20  # finished jobs listed under the queue, for "what just happened to mine?"
WIDTHS = [0.6, 2.6, 1.1, 0.8, 2.2, 1.0, 1.2]
HEADER = ["Run", "Inputs", "Status", "Position", "Progress", "Owner", ""]


@dataclass
class Row:
    run: Any
    position: int | None
    mine: bool
    can_cancel: bool
    can_requeue: bool
    starts: datetime | None = None  # queued: when it should start, where that can be told


def queue_rows(g: Any, owner: str, workers: int = 1) -> tuple[list[Row], list[Row]]:
    """(jobs waiting or running, in queue order; recently ended ones, newest first)."""
    running = g.list_runs(RunFilter(status="running"), sort="oldest", limit=100)
    queued = g.list_runs(RunFilter(status="queued"), sort="oldest", limit=200)
    ended = g.list_runs(RunFilter(status=tuple(s for s in STATUSES if s not in ACTIVE)), limit=RECENT)

    starts = estimates.expected_starts(g, running, queued, workers) if queued else {}

    def row(run: Any, position: int | None) -> Row:
        mine = run.owner == owner
        return Row(run, position, mine,
                   can_cancel=auth.may_cancel(run.owner, owner) and run.status in ACTIVE,
                   can_requeue=run.status == "interrupted" or (mine and run.status in ("failed", "cancelled")),
                   starts=starts.get(run.id))

    active = [row(r, None) for r in running] + [row(r, g.queue_position(r.id)) for r in queued]
    return active, [row(r, None) for r in ended]


def _cancel(run_id: int) -> None:
    auth.cancel(common.get_gallery(), run_id)


def _requeue(run_id: int) -> None:
    common.get_gallery().requeue(run_id)


def _draw_row(r: Row) -> None:
    run, view = r.run, job_view(r.run, r.position)
    cols = st.columns(WIDTHS, vertical_alignment="center")
    cols[0].markdown(f"**#{run.id}**")
    clip = f"{common.clip_caption(run.frames)} · " if run.is_clip else ""
    cols[1].markdown(common.escape_md(common.run_label(run)) +
                     f"  \n:gray[{clip}{run.params.size} px · {run.params.iterations} it · {run.params.device}]")
    cols[2].markdown(STATUS_LABEL.get(run.status, run.status))
    cols[3].markdown(str(r.position) if r.position else "—")
    if run.status in ("running", "done"):
        cols[4].progress(view.fraction, text=f"{view.short_progress()} · ETA {common.fmt_duration(view.eta)}"
                         if run.status == "running" else f"{common.fmt_duration(run.duration)}")
    elif run.status == "queued":
        cols[4].caption(f"Starts in about {common.fmt_duration(common.seconds_until(r.starts))}"
                        if r.starts else "Start: unknown until a run has finished here")
    else:
        cols[4].caption(common.escape_md(run.error or "") if run.status == "failed" else "")
    cols[5].markdown(f"**{run.owner} (you)**" if r.mine else (run.owner or "—"))
    with cols[6]:
        if r.can_cancel:
            st.button("Cancel", key=f"qcancel-{run.id}", on_click=_cancel, args=(run.id,),
                      icon=":material/cancel:")
        elif r.can_requeue:
            st.button("Re-queue", key=f"qrequeue-{run.id}", on_click=_requeue, args=(run.id,),
                      icon=":material/replay:")


def _draw_table(rows: list[Row], empty: str) -> None:
    if not rows:
        st.caption(empty)
        return
    for col, title in zip(st.columns(WIDTHS), HEADER):
        col.caption(title)
    for r in rows:
        _draw_row(r)


@auth.fragment(run_every=POLL_SECONDS)
def live_queue(owner: str) -> None:
    supervisor = common.ensure_worker()
    states = supervisor.states() if supervisor else None
    active, ended = queue_rows(common.get_gallery(), owner, len(states) if states else 1)
    for healthy, line in common.worker_lines(states, [r.run for r in active if r.run.status == "running"]):
        (st.caption if healthy else st.warning)(common.escape_md(line))
    running = sum(r.run.status == "running" for r in active)
    st.subheader(f"Running and waiting · {running} running, {len(active) - running} queued", anchor=False)
    _draw_table(active, "Nothing is queued.")
    st.subheader("Recently ended", anchor=False)
    _draw_table(ended, "No finished jobs yet.")


def page() -> None:
    owner = common.current_owner()
    st.title("Queue")
    st.caption("All jobs of everyone using this studio. You can cancel your own; anyone can "
               "re-queue a job that a server restart interrupted.")
    live_queue(owner)


if __name__ == "__main__":
    page()
