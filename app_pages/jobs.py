"""Live view of a job or a sweep batch on the Create page.

Everything shown is read back from SQLite (what the worker wrote), never from session state, so
a reload or a second tab sees the same job. While the job is active a fragment re-reads it every
POLL_SECONDS (long jobs less often: poll_seconds) without rerunning (or blocking) the rest of
the page.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import streamlit as st

from app_pages import auth, common
from app_pages.sweep import grid
from engine.params import eta_seconds
from gallery import Gallery, NotFound, Run, RunFilter, estimates
from gallery.db import ACTIVE

POLL_SECONDS = 1.0
LONG_POLL_SECONDS = 5.0
STATUS_LABEL = {
    "queued": "Queued", "running": "Running", "done": "Done", "failed": "Failed",
    "cancelled": "Cancelled", "interrupted": "Interrupted",
}


@dataclass
class JobView:
    """What the job panel shows, computed without Streamlit."""

    status: str
    label: str
    fraction: float
    iteration: int
    total: int
    position: int | None
    elapsed: float | None
    eta: float | None
    losses: dict[str, float] = field(default_factory=dict)
    frame: int = 0  # a running clip's frame (1-based); iteration and total count within it
    frames: int = 1
    tile: int = 0  # a tiled run's tiles done of the iteration in progress (iteration + 1)
    tiles: int = 0

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def progress_text(self) -> str:
        if self.status == "queued":
            return f"Queued — position {self.position} in the queue" if self.position else "Queued"
        if self.status == "running" and self.tiles and self.iteration < self.total:
            # A print's iteration takes minutes: it is counted in tiles as it goes.
            return f"Iteration {self.iteration + 1} of {self.total} · tile {self.tile} of {self.tiles}"
        if self.status == "running" and not self.iteration:
            return "Starting (loading the network)…"
        if self.frame and self.status != "done":
            return f"Frame {self.frame} of {self.frames} · iteration {self.iteration} of {self.total}"
        return f"Iteration {self.iteration} of {self.total}"

    def short_progress(self) -> str:
        """The progress in a table cell (the Queue)."""
        within = f"{self.iteration}/{self.total}"
        return f"frame {self.frame}/{self.frames} · {within}" if self.frame else within


def job_view(run: Run, position: int | None, now: datetime | None = None) -> JobView:
    total = int(run.total or run.params.total_iterations() or 0)
    iteration = int(run.iteration or 0)
    if run.status == "done":
        iteration = total
        elapsed = run.duration
    else:
        elapsed = common.elapsed_seconds(run.started, now) if run.status == "running" else None
    fraction = run.work_done() if run.status != "done" else 1.0
    eta = eta_seconds(elapsed, fraction) if run.status == "running" else None
    return JobView(run.status, STATUS_LABEL.get(run.status, run.status), fraction, iteration,
                   total, position if run.status == "queued" else None, elapsed, eta,
                   dict(run.losses or {}), run.frame if run.status == "running" else 0, run.frames,
                   run.tile, run.tiles)


def _cancel(run_ids: list[int]) -> None:
    gallery = common.get_gallery()
    for run_id in run_ids:
        auth.cancel(gallery, run_id)


def _requeue(run_id: int) -> None:
    new_id = common.get_gallery().requeue(run_id)
    st.query_params["run"] = str(new_id)


# Each part of the loss as it counts in the total: the engine reports them unweighted.
WEIGHTS = {"content": "content_weight", "style": "style_weight", "tv": "tv_weight", "temporal": "temporal_weight"}


def timing_line(view: JobView) -> str:
    return f"Elapsed {common.fmt_duration(view.elapsed)} · ETA {common.fmt_duration(view.eta)}"


def weighted_losses(losses: dict[str, float], params: Any) -> list[tuple[str, float]]:
    """(name, value) rows: the total, then each part times its weight, so the parts add up to
    the total (a clip's temporal term too)."""
    rows = [("total", losses["total"])] if "total" in losses else []
    for name, value in losses.items():
        if name != "total" and isinstance(value, (int, float)):
            rows.append((name, value * getattr(params, WEIGHTS.get(name, ""), 1.0)))
    return rows


def loss_table(losses: dict[str, float], params: Any) -> str:
    """The weighted losses as a two-column Markdown table: one row a part, so it fits the
    narrow job column however many parts there are."""
    rows = weighted_losses(losses, params)
    return "| loss | weighted |\n|:---|---:|\n" + "\n".join(f"| {name} | {common.fmt_loss(value)} |" for name, value in rows)


def _draw_progress(view: JobView, params: Any) -> None:
    st.progress(view.fraction, text=view.progress_text())
    if view.status == "running":
        st.caption(timing_line(view))
    if view.losses:
        st.markdown(loss_table(view.losses, params))


def _draw_job(run_id: int, owner: str, drawn: str | None) -> None:
    """The job panel; `drawn`: the run's status when the page was drawn, while it polls."""
    gallery = common.get_gallery()
    try:
        run = gallery.get(run_id)
    except NotFound:  # deleted meanwhile, perhaps from another tab
        st.info(f"Run #{run_id} no longer exists.")
        return
    if drawn is not None and run.status != drawn:
        # Started or ended: the whole page again (the sidebar's worker line with it), and once
        # it has ended, without the timer.
        st.rerun()
    view = job_view(run, gallery.queue_position(run_id) if run.status == "queued" else None)
    mine = auth.may_cancel(run.owner, owner)
    with st.container(border=True, key="job"):
        st.subheader(f"Run #{run.id} · {view.label}", anchor=False)
        st.caption(f"{common.escape_md(common.run_label(run))} · {run_summary(run)}")
        action = st.container(horizontal=True)
        if view.active and mine:
            cancelling = run.status == "running" and run.cancel_requested
            action.button("Cancelling…" if cancelling else "Cancel", key="cancel", disabled=cancelling,
                          icon=":material/cancel:", on_click=_cancel, args=([run_id],))
        elif run.status in ("failed", "cancelled", "interrupted") and mine:
            action.button("Re-queue", key="requeue", icon=":material/replay:",
                          on_click=_requeue, args=(run_id,))
        elif run.status == "done":
            if common.existing(run.result_path):
                action.download_button("Download PNG" + (" (first frame)" if run.is_clip else ""),
                                       data=lambda: gallery.export_png(run_id), file_name=common.download_name(run),
                                       mime="image/png", key="download_result", icon=":material/download:",
                                       type="primary")
            action.page_link(common.PAGE_GALLERY, label="Open in gallery", query_params={"run": str(run_id)},
                             icon=":material/photo_library:")
        if run.status == "failed" and run.error:
            st.error(common.escape_md(run.error))
        if run.status != "done":
            _draw_progress(view, run.params)
        caption = f"Result · {run.params.size} px · {common.fmt_duration(run.duration)} on {common.escape_md(run.ran_on)}"
        if run.status == "done" and common.existing(run.animation_path):
            common.show_animation(run.animation_path, caption=caption)
        elif run.status == "done" and common.existing(run.result_path):
            common.show_image(run.result_path, caption=caption)
        elif run.is_clip and run.status == "running" and (finished := gallery.frames(run.id)):
            st.image(str(finished[-1]), width="stretch", caption=f"Frame {len(finished)} of {run.frames}, finished")
        elif common.existing(run.preview_path):
            # Previews of the coarse scales are small; stretched, they still show where it is going.
            st.image(str(run.preview_path), width="stretch", caption=f"Latest preview (iteration {view.iteration})")
        elif view.active:
            st.caption("The preview appears here after the first saved iteration.")


def run_summary(run: Run) -> str:
    """"512 px · 300 iterations · auto"; a clip's first frame and later frames told apart."""
    p = run.params
    its = (f"{p.iterations} iterations (first frame), {p.frame_iterations} a frame after · "
           f"{common.clip_caption(run.frames)}" if run.is_clip else f"{p.iterations} iterations")
    return f"{p.size} px · {its} · {p.device}"


def poll_seconds(expected: float | None) -> float:
    """How often a job panel polls: every second for short jobs, less often for long ones (a
    hundredth of the expected duration, at most every LONG_POLL_SECONDS)."""
    return POLL_SECONDS if expected is None else min(LONG_POLL_SECONDS, max(POLL_SECONDS, expected / 100))


def show_job(run_id: int, owner: str) -> None:
    """The job panel; polls while the job is queued or running."""
    gallery = common.get_gallery()
    try:
        run = gallery.get(run_id)
    except NotFound:
        run = None
    active = run is not None and run.status in ACTIVE
    every = None
    if active:
        speed = estimates.measured_speed(gallery, run.params.device)
        every = poll_seconds(estimates.run_seconds(gallery, run, speed) if speed else None)
    auth.fragment(run_every=every)(_draw_job)(run_id, owner, run.status if active else None)


# --- sweep batches ------------------------------------------------------------------------------

def batch_runs(gallery: Gallery, batch: str, owner: str | None = None) -> list[Any]:
    """The runs of a batch, oldest first."""
    return gallery.list_runs(RunFilter(batch=batch, owner=owner or None), sort="oldest", limit=500)


def _fmt_axis(name: str, value: Any) -> str:
    return f"{name} = {value:g}" if isinstance(value, float) else f"{name} = {value}"


def _draw_batch(batch: str, owner: str, polling: bool) -> None:
    gallery = common.get_gallery()
    runs = batch_runs(gallery, batch, owner)
    if not runs:
        st.info("This sweep no longer exists.")
        return
    active = [r for r in runs if r.status in ACTIVE]
    if polling and not active:
        st.rerun()
    done = sum(r.status == "done" for r in runs)
    with st.container(border=True, key="job"):
        st.subheader(f"Sweep · {done} of {len(runs)} done", anchor=False)
        action = st.container(horizontal=True)
        if active:
            action.button("Cancel", key="cancel", icon=":material/cancel:", on_click=_cancel,
                          args=([r.id for r in active],))
        st.progress(sum(job_view(r, None).fraction for r in runs) / len(runs))
        axes, rows, cols, cells = grid(runs)
        if len(axes) == 2:
            cols_ui = st.columns([1] + [2] * len(cols))
            for c, value in zip(cols_ui[1:], cols):
                c.caption(_fmt_axis(axes[1], value))
        for row in rows:
            line = st.columns([1] + [2] * len(cols)) if len(axes) == 2 else st.columns(len(cols))
            cells_ui = line[1:] if len(axes) == 2 else line
            if len(axes) == 2:
                line[0].caption(_fmt_axis(axes[0], row))
            for c, value in zip(cells_ui, cols):
                run = cells.get((row, value))
                with c:
                    _draw_cell(run, axes[-1] if len(axes) == 1 else None, value)


def _draw_cell(run: Run | None, axis: str | None, value: Any) -> None:
    if run is None:
        st.caption("—")
        return
    image = common.existing(run.thumb_path) or common.existing(run.preview_path)
    label = _fmt_axis(axis, value) if axis else f"#{run.id}"
    if image:
        st.image(str(image), width="stretch")
    view = job_view(run, None)
    st.caption(f"{label} · {view.label}" + (f" {view.fraction:.0%}" if run.status == "running" else ""))


def show_batch(batch: str, owner: str) -> None:
    runs = batch_runs(common.get_gallery(), batch, owner)
    active = any(r.status in ACTIVE for r in runs)
    auth.fragment(run_every=POLL_SECONDS if active else None)(_draw_batch)(batch, owner, active)
