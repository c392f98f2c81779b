"""Create: choose images and settings, queue a run (or a sweep), watch it progress."""
from __future__ import annotations

import uuid
from typing import Any

import streamlit as st

from app_pages import auth, common, inputs, jobs, regions
from app_pages import params_form as form
from app_pages import sweep
from engine.images import ImageError
from engine.params import Params, ParamsError
from gallery import GalleryError, RunFilter, estimates
from gallery.paths import input_sha256

NONE = "—"


def current_job(g: Any, owner: str, query: dict[str, str]) -> tuple[str, Any] | None:
    """Which job the page shows: ("run", id) or ("batch", id). The URL's choice first (a reload,
    a shared link), else this owner's latest run, looked up in the database so that a second
    tab finds it too."""
    if query.get("batch"):
        return "batch", query["batch"]
    if query.get("run", "").isdecimal():
        return "run", int(query["run"])
    latest = g.list_runs(RunFilter(owner=owner), sort="newest", limit=1)
    if not latest:
        return None
    run = latest[0]
    return ("batch", run.batch) if run.batch else ("run", run.id)


def apply_prefill(g: Any, session: Any, run_id: int) -> None:
    """ "Re-run with these settings": the run's parameters and images into the form."""
    run = g.get(run_id)
    form.prefill(session, run.params)
    inputs.chosen(session, "content")[:] = [{"path": run.params.content, "name": run.content_name}]
    names = list(run.style_names) + [""] * len(run.params.styles)
    inputs.chosen(session, "style")[:] = [
        {"path": path, "name": name or path} for path, name in zip(run.params.styles, names)]
    regions.prefill(session, run.params.styles, run.params.style_masks)


def sweep_axes() -> tuple[list[tuple[str, list[Any]]], dict[str, str]]:
    """The axes chosen in the Sweep expander, and parse errors keyed by the axis' field."""
    axes, errors = [], {}
    for i in (1, 2):
        name = st.session_state.get(f"sweep_param_{i}")
        if name not in sweep.SWEEPABLE:  # none chosen (or a value the page never offered)
            continue
        values, error = sweep.parse_values(st.session_state.get(f"sweep_values_{i}", ""), sweep.SWEEPABLE[name])
        if error:
            errors[f"sweep_values_{i}"] = error
        elif name in dict(axes):
            errors[f"sweep_values_{i}"] = "choose two different parameters"
        else:
            axes.append((name, values))
    return axes, errors


def submit(g: Any, p: Params, owner: str, axes: list[tuple[str, list[Any]]]) -> dict[str, str]:
    """Queues one run or a sweep batch; returns the query params that point at it."""
    if not axes:
        target = {"run": str(g.submit(p, owner=owner))}
    else:
        target = {"batch": uuid.uuid4().hex[:12]}
        for variant in sweep.expand(p, axes):
            g.submit(variant, owner=owner, batch=target["batch"])
    return target


def render_sweep(errors: dict[str, str]) -> None:
    st.caption("Queue a grid of runs: one or two parameters, a few values each "
               f"(at most {sweep.MAX_RUNS} runs).")
    for i in (1, 2):
        left, right = st.columns([1, 2])
        left.selectbox(f"Parameter {i}", [NONE, *sweep.SWEEPABLE], key=f"sweep_param_{i}")
        right.text_input(f"Values {i}", key=f"sweep_values_{i}", placeholder="e.g. 10, 100, 1000")
        form.field_error(errors, f"sweep_values_{i}")  # unparsable values
        form.field_error(errors, st.session_state.get(f"sweep_param_{i}", ""))  # the engine's verdict
    form.field_error(errors, "sweep")


def _queue(g: Any, p: Params, owner: str, axes: list[tuple[str, list[Any]]], runs: int,
           masks: list[Any], style_names: list[str]) -> None:
    foreign = [path for path in (p.content, *p.styles) if not inputs.offered(g, path)]
    if foreign:  # the choices are made on the server; this holds should one slip through
        st.error("Only uploaded images and the examples can be used here.", icon=":material/error:")
        return
    try:
        if masks:
            p = p.with_changes(style_masks=regions.store(g, masks, style_names))
        target = submit(g, p, owner, axes)
    except (ParamsError, GalleryError, ImageError) as exc:  # e.g. an image file vanished since it was chosen
        st.error(common.escape_md(str(exc)), icon=":material/error:")
        return
    # The job panel may be scrolled out of view; a toast is seen wherever one is. Shown by the
    # next run: this one ends in st.rerun().
    st.session_state["toast"] = f"Queued run #{target['run']}" if "run" in target else f"Queued {runs} runs"
    for key in ("run", "batch"):
        st.query_params.pop(key, None)
    st.query_params.update(target)
    st.rerun()


def estimate_line(g: Any, variants: list[Params]) -> str:
    """How long the runs Generate would queue should take here (not counting the queue)."""
    speed = estimates.measured_speed(g, variants[0].device)
    if speed is None:
        return "Estimated time: unknown until a run has finished on this machine."
    aspect = estimates.aspect_of(g, input_sha256(variants[0].content))
    clip = inputs.stored_clip(g, variants[0].content)
    seconds = sum(speed.seconds(v, aspect, clip.frames if clip else 1) for v in variants)
    return (f"Estimated time: about {common.fmt_duration(seconds)}, from this machine's last "
            f"{speed.runs} finished run{'s' if speed.runs > 1 else ''}.")


def settings_column(g: Any, owner: str) -> None:
    """Images, preset, Advanced, Sweep and the Generate button."""
    style_items = inputs.chosen(st.session_state, "style")
    p = form.params_from_state(st.session_state, "", tuple(i["path"] for i in style_items))
    settings_errors = auth.validation_errors(p, need_images=False)
    axes, axis_errors = sweep_axes()
    if axes:
        axis_errors.update(sweep.sweep_errors(p, axes))

    left, right = st.columns(2)
    with left:
        content = inputs.render("content", "Content image")
    with right:
        styles = inputs.render("style", "Style images")
    masks = regions.render(g, content, styles)

    st.subheader("Settings", anchor=False)
    form.render_preset()
    chosen_preset = st.session_state.get(form.PRESET_KEY)
    modified = form.changed_from_preset(p, chosen_preset)
    st.caption(("Changed from the preset: " + ", ".join(modified)) if modified else
               "Unchanged preset." if chosen_preset else "Custom settings.")
    # Keyed expanders keep their open/closed state across reruns; errors open them.
    if settings_errors:
        st.session_state["advanced"] = True
    if axis_errors:
        st.session_state["sweep"] = True
    with st.expander("Advanced", key="advanced"):
        form.render_advanced(settings_errors, [s["name"] for s in styles])
    with st.expander("Sweep", key="sweep"):
        render_sweep(axis_errors)

    p = form.params_from_state(st.session_state, content[0]["path"] if content else "",
                               tuple(s["path"] for s in styles))
    errors = auth.validation_errors(p, need_images=True)
    variants = sweep.expand(p, axes) if axes else [p]
    runs = len(variants)
    label = f"Generate {runs} runs" if runs > 1 else "Generate"
    if st.button(label, key="generate", type="primary", disabled=bool(errors or axis_errors),
                 icon=":material/brush:"):
        _queue(g, p, owner, axes, runs, masks, [s["name"] for s in styles])
    if not errors and not axis_errors:
        st.caption(estimate_line(g, variants))
    if errors:
        missing = [m for f, m in errors.items() if f in ("content", "styles")]
        st.caption(" · ".join(m.capitalize() for m in missing) or "Fix the settings marked above.")
    form.save_form(st.session_state)


def job_column(g: Any, owner: str) -> None:
    target = current_job(g, owner, dict(st.query_params))
    if target is None:
        st.info("Your runs appear here. Choose images and press **Generate**.")
    elif target[0] == "run":
        st.query_params["run"] = str(target[1])
        jobs.show_job(target[1], owner)
    else:
        st.query_params["batch"] = target[1]
        jobs.show_batch(target[1], owner)


def page() -> None:
    g = common.get_gallery()
    owner = common.current_owner()
    if st.query_params.get("from", "").isdecimal():
        try:
            apply_prefill(g, st.session_state, int(st.query_params["from"]))
        except GalleryError as exc:  # NotFound: deleted meanwhile
            st.warning(f"Could not load those settings: {exc}")
        del st.query_params["from"]
    form.init_form(st.session_state)
    if "toast" in st.session_state:
        st.toast(st.session_state.pop("toast"), icon=":material/schedule:")

    st.title("Create")
    settings, job = st.columns([3, 2], gap="large")
    with settings:
        settings_column(g, owner)
    with job:
        job_column(g, owner)


# Streamlit runs page files as __main__; tests import the functions above without drawing.
if __name__ == "__main__":
    page()
