"""Queue: every session's jobs, live. People cancel their own; anyone can re-queue a job that a
restart interrupted (its owner may be long gone)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import streamlit as st

from app_pages import auth, common
from app_pages.jobs import STATUS_LABEL, job_view
from gallery import Gallery, Run, RunFilter, estimates
from gallery.db import ACTIVE, STATUSES

POLL_SECONDS = 2.0
RECENT = 20  # finished jobs listed under the queue, for "what just happened to mine?"
# Run, where it stands, whose, what can be done: each cell says what it is, so a narrow window
# that stacks the cells of a row still reads (a header row over stacked cells did not).
WIDTHS = [3.0, 3.2, 1.3, 1.2]

@dataclass
class Row:
    run: Run
    position: int | None
    mine: bool
    can_cancel: bool
    can_requeue: bool
    starts: datetime | None = None  # queued: when it should start, where that can be told


def queue_rows(gallery: Gallery, owner: str, workers: int = 1) -> tuple[list[Row], list[Row]]:
    """(jobs waiting or running, in queue order; recently ended ones, newest first)."""
    running = gallery.list_runs(RunFilter(status="running"), sort="oldest", limit=100)
    queued = gallery.list_runs(RunFilter(status="queued"), sort="oldest", limit=200)
    ended = gallery.list_runs(RunFilter(status=tuple(s for s in STATUSES if s not in ACTIVE)), limit=RECENT)

    starts = estimates.expected_starts(gallery, running, queued, workers) if queued else {}

    def row(run: Run, position: int | None) -> Row:
        mine = run.owner == owner
        return Row(run, position, mine,
                   can_cancel=auth.may_cancel(run.owner, owner) and run.status in ACTIVE,
                   can_requeue=run.status == "interrupted" or (mine and run.status in ("failed", "cancelled")),
                   starts=starts.get(run.id))

    active = [row(r, None) for r in running] + [row(r, gallery.queue_position(r.id)) for r in queued]
    return active, [row(r, None) for r in ended]


def _cancel(run_id: int) -> None:
    auth.cancel(common.get_gallery(), run_id)


def _requeue(run_id: int) -> None:
    common.get_gallery().requeue(run_id)


def _draw_row(r: Row) -> None:
    run, view = r.run, job_view(r.run, r.position)
    with st.container(border=True, key=f"qrow-{run.id}"):
        cols = st.columns(WIDTHS, vertical_alignment="center")
        with cols[0]:
            st.page_link(common.PAGE_GALLERY, label=f"**#{run.id}** {common.escape_md(common.run_label(run))}",
                         query_params={"run": str(run.id)}, help="Open it in the Gallery")
            clip = f"{common.clip_caption(run.frames)} · " if run.is_clip else ""
            st.caption(f"{clip}{run.params.size} px · {run.params.iterations} it · {run.params.device}")
        with cols[1]:
            _draw_state(r, view)
        cols[2].caption("Owner: " + (f"**{run.owner} (you)**" if r.mine else (run.owner or "—")))
        with cols[3]:
            if r.can_cancel:
                st.button("Cancel", key=f"qcancel-{run.id}", on_click=_cancel, args=(run.id,),
                          icon=":material/cancel:")
            elif r.can_requeue:
                st.button("Requeue", key=f"qrequeue-{run.id}", on_click=_requeue, args=(run.id,),
                          icon=":material/replay:", help="Queue it again with the same settings")


def _draw_state(r: Row, view: Any) -> None:
    run, label = r.run, STATUS_LABEL.get(r.run.status, r.run.status)
    if run.status == "running":
        st.progress(view.fraction, text=f"{label} · {view.short_progress()} · ETA {common.fmt_duration(view.eta)}")
    elif run.status == "done":
        st.progress(1.0, text=f"{label} in {common.fmt_duration(run.duration)}")
    elif run.status == "queued":
        starts = (f"starts in about {common.fmt_duration(common.seconds_until(r.starts))}" if r.starts
                  else "start unknown until a run has finished here")
        st.caption(f"**{label}** · position {r.position or '—'} · {starts}")
    else:
        st.caption(f"**{label}**" + (f" · {common.escape_md(run.error)}" if run.status == "failed" and run.error else ""))


def _draw_table(rows: list[Row], empty: str) -> None:
    if not rows:
        st.caption(empty)
    for r in rows:
        _draw_row(r)


@auth.fragment(run_every=POLL_SECONDS)
def live_queue(owner: str) -> None:
    supervisor = common.ensure_worker()
    states = supervisor.states() if supervisor else None
    active, ended = queue_rows(common.get_gallery(), owner, len(states) if states else 1)
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
