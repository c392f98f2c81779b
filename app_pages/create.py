"""Create: choose images and settings, queue a run (or a sweep), watch it progress."""
from __future__ import annotations

import copy
import uuid
from typing import Any

import streamlit as st

from app_pages import common, inputs, jobs, regions, sweep
from app_pages import params_form as form
from engine.images import ImageError
from engine.params import Params, ParamsError
from gallery import Gallery, GalleryError, RunFilter, drafts, estimates
from gallery.paths import input_sha256

NONE = "—"


def current_job(gallery: Gallery, owner: str, query: dict[str, str]) -> tuple[str, Any] | None:
    """Which job the page shows: ("run", id) or ("batch", id). The URL's choice first (a reload,
    a shared link), else this owner's latest run, looked up in the database so that a second
    tab finds it too."""
    if query.get("batch"):
        return "batch", query["batch"]
    if query.get("run", "").isdecimal():
        return "run", int(query["run"])
    latest = gallery.list_runs(RunFilter(owner=owner), sort="newest", limit=1)
    if not latest:
        return None
    run = latest[0]
    return ("batch", run.batch) if run.batch else ("run", run.id)


def apply_prefill(gallery: Gallery, session: Any, run_id: int) -> None:
    """ "Re-run with these settings": the run's parameters and images into the form."""
    run = gallery.get(run_id)
    form.prefill(session, run.params, run.id)
    inputs.chosen(session, "content")[:] = [{"path": run.params.content, "name": run.content_name}]
    names = list(run.style_names) + [""] * len(run.params.styles)
    inputs.chosen(session, "style")[:] = [
        {"path": path, "name": name or path} for path, name in zip(run.params.styles, names)]
    regions.prefill(session, run.params.styles, run.params.style_masks)


def sweep_axes() -> tuple[list[tuple[str, list[Any]]], dict[str, str]]:
    """The axes chosen in the Sweep expander, and parse errors keyed by the axis' field."""
    axes: list[tuple[str, list[Any]]] = []
    errors: dict[str, str] = {}
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


def submit(gallery: Gallery, p: Params, owner: str, axes: list[tuple[str, list[Any]]]) -> dict[str, str]:
    """Queues one run or a sweep batch; returns the query params that point at it."""
    if not axes:
        target = {"run": str(gallery.submit(p, owner=owner))}
    else:
        target = {"batch": uuid.uuid4().hex[:12]}
        for variant in sweep.expand(p, axes):
            gallery.submit(variant, owner=owner, batch=target["batch"])
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


def _queue(gallery: Gallery, p: Params, owner: str, axes: list[tuple[str, list[Any]]], runs: int,
           masks: list[Any], style_names: list[str]) -> None:
    foreign = [path for path in (p.content, *p.styles, *([p.init_image] if p.init_image else []))
               if not inputs.offered(gallery, path)]
    if foreign:  # the choices are made on the server; this holds should one slip through
        st.error("Only uploaded images and the examples can be used here.", icon=":material/error:")
        return
    try:
        if masks:
            p = p.with_changes(style_masks=regions.store(gallery, masks, style_names))
        target = submit(gallery, p, owner, axes)
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


def estimate_line(gallery: Gallery, variants: list[Params]) -> str:
    """How long the runs Generate would queue should take here (not counting the queue), as a
    range: a wrong number helps nobody."""
    speed = estimates.measured_speed(gallery, variants[0].device)
    if speed is None:
        return "Estimated time: unknown until a run has finished on this machine."
    aspect = estimates.aspect_of(gallery, input_sha256(variants[0].content))
    clip = inputs.stored_clip(gallery, variants[0].content)
    frames = clip.frames if clip else 1
    low, high = (sum(bound) for bound in zip(*(speed.range(v, aspect, frames) for v in variants)))
    said = f"Estimated time: {common.fmt_range(low, high)}, from this machine's last {speed.runs} " \
           f"finished run{'s' if speed.runs > 1 else ''}."
    if clip:
        p = variants[0]
        said += (f" A clip of {frames} frames: {p.iterations} iterations for the first frame at each size, "
                 f"{p.frame_iterations} for each later one (Advanced → Frame iterations).")
    return said


MAX_VARIATIONS = 8


def variation_axis(p: Params, axes: list[tuple[str, list[Any]]], errors: dict[str, str]) -> list[tuple[str, list[Any]]]:
    """The "Variations" box beside Generate: N runs with seeds seed, seed+1, … (as a sweep of the
    seed). Seeds change a result only from noise, so from the content image it is off."""
    noise = p.init == "noise"
    count = st.number_input("Variations", 1, MAX_VARIATIONS, key="variations", step=1, disabled=not noise,
                            help="Several runs differing only in their seed" if noise else
                            "Seeds change the result only when it starts from noise (Advanced → Start from)")
    if not noise or not isinstance(count, int) or count <= 1:
        return []
    if any(name == "seed" for name, _ in axes) or len(axes) > 1:
        errors["variations"] = "Variations and a sweep of the seed, or of two parameters, are too many at once"
        return []
    runs = count * (len(axes[0][1]) if axes else 1)
    if runs > sweep.MAX_RUNS:
        errors["variations"] = f"{runs} runs with the sweep is too many at once; at most {sweep.MAX_RUNS}"
        return []
    seed = p.seed if isinstance(p.seed, int) else 0
    return [("seed", [seed + i for i in range(count)])]


def upscale_line(gallery: Gallery, p: Params) -> str:
    """Said when the result would be larger than the content (a 96 px clip at 128 px): the
    missing detail is made up by stretching, and a person should know."""
    side = inputs.longest_side(gallery, p.content) if p.content else None
    if side is None or not isinstance(p.size, int) or p.size <= side:
        return ""
    return (f"The content is {side} px on its longest side: the {p.size} px result is stretched from it "
            f"and will look soft. A size of {side} px keeps it sharp.")


def blocking_line(errors: dict[str, str]) -> str:
    """What keeps Generate disabled, in one line: the images missing, then each setting by the
    label it has on the page ("Temporal weight must be at least 0 …")."""
    missing = [m.capitalize() for f, m in errors.items() if f in ("content", "styles")]
    settings = [f"{form.label(f)} {m}" for f, m in errors.items() if f not in ("content", "styles")]
    return " · ".join(missing + settings)


def settings_column(gallery: Gallery, owner: str) -> None:
    """Images, preset, Advanced, Sweep and the Generate button."""
    style_items = inputs.chosen(st.session_state, "style")
    p = form.params_from_state(st.session_state, "", tuple(i["path"] for i in style_items))
    settings_errors = form.validation_errors(p, need_images=False)
    axes, axis_errors = sweep_axes()
    if axes:
        axis_errors.update(sweep.sweep_errors(p, axes))

    left, right = st.columns(2)
    with left:
        content = inputs.render("content", "Content image")
    with right:
        styles = inputs.render("style", "Style images")
    masks = regions.render(gallery, content, styles)

    st.subheader("Settings", anchor=False)
    form.render_preset()
    chosen_preset = st.session_state.get(form.PRESET_KEY)
    modified = form.changed_from_preset(p, chosen_preset)
    from_run = st.session_state.get(form.FROM_RUN_KEY)
    st.caption(("Changed from the preset: " + ", ".join(form.label(f) for f in modified)) if modified else
               "Unchanged preset." if chosen_preset else
               f"The settings of run #{from_run}." if from_run else "Custom settings.")
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
    errors = form.validation_errors(p, need_images=True)
    go, more = st.columns([3, 2], vertical_alignment="bottom")
    with more:
        axes = axes + variation_axis(p, axes, axis_errors)
    variants = sweep.expand(p, axes) if axes else [p]
    runs = len(variants)
    label = f"Generate {runs} runs" if runs > 1 else "Generate"
    if go.button(label, key="generate", type="primary", disabled=bool(errors or axis_errors),
                 icon=":material/brush:", shortcut="Ctrl+Enter", help="Ctrl+Enter"):
        _queue(gallery, p, owner, axes, runs, masks, [s["name"] for s in styles])
    form.field_error(axis_errors, "variations")
    if not errors and not axis_errors:
        st.caption(estimate_line(gallery, variants))
    upscaled = upscale_line(gallery, p)
    if upscaled:
        st.caption(upscaled)
    if errors:
        # Said here, beside the disabled button: the field's own mark may be scrolled out of view.
        images_only = set(errors) <= {"content", "styles"}  # the page as it starts: no alarm
        (st.caption if images_only else st.error)(common.escape_md(blocking_line(errors)))
    form.save_form(st.session_state)
    save_draft(gallery, st.session_state, owner)


def job_column(gallery: Gallery, owner: str) -> None:
    target = current_job(gallery, owner, dict(st.query_params))
    if target is None:
        st.info("Your runs appear here. Choose images and press **Generate**.")
    elif target[0] == "run":
        st.query_params["run"] = str(target[1])
        jobs.show_job(target[1], owner)
    else:
        st.query_params["batch"] = target[1]
        jobs.show_batch(target[1], owner)


DRAFT_READ, DRAFT_WRITTEN = "draft_read", "draft_written"


def draft_of(session: Any) -> dict[str, Any]:
    """What this browser is about to generate: its chosen images and the form (a copy: the
    session's own lists change in place)."""
    return copy.deepcopy({"content": inputs.chosen(session, "content"), "styles": inputs.chosen(session, "style"),
                          "form": session.get(form.SAVED_KEY, {})})


def restore_draft(gallery: Gallery, session: Any, draft: dict[str, Any]) -> None:
    """A draft kept from this browser's last visit (gallery.drafts) back on the page; each image
    only if the page may still use it, each setting only if it has the type its widget takes."""
    for kind, key in (("content", "content"), ("style", "styles")):
        for item in draft.get(key) or []:
            if isinstance(item, dict) and isinstance(item.get("path"), str) and inputs.offered(gallery, item["path"]):
                inputs.choose(session, kind, item["path"], str(item.get("name") or "image"))
    saved = draft.get("form")
    if isinstance(saved, dict):
        typed = form.typed_like_defaults(saved)
        if typed.get(form.INIT_IMAGE_KEY) and not inputs.offered(gallery, typed[form.INIT_IMAGE_KEY]):
            typed[form.INIT_IMAGE_KEY] = ""
        session[form.SAVED_KEY] = typed


def save_draft(gallery: Gallery, session: Any, owner: str) -> None:
    draft = draft_of(session)
    if draft != session.get(DRAFT_WRITTEN) and drafts.save(gallery.data_dir, owner, draft):
        session[DRAFT_WRITTEN] = draft


def page() -> None:
    gallery = common.get_gallery()
    owner = common.current_owner()
    if st.query_params.get("from", "").isdecimal():
        try:
            apply_prefill(gallery, st.session_state, int(st.query_params["from"]))
        except GalleryError as exc:  # NotFound: deleted meanwhile
            st.warning(f"Could not load those settings: {exc}")
        del st.query_params["from"]
    elif not st.session_state.get(DRAFT_READ):  # a reload, a new tab: as this browser left it
        restore_draft(gallery, st.session_state, drafts.load(gallery.data_dir, owner))
    st.session_state[DRAFT_READ] = True
    form.init_form(st.session_state)

    st.title("Create")
    settings, job = st.columns([3, 2], gap="large")
    with settings:
        settings_column(gallery, owner)
    with job:
        job_column(gallery, owner)


# Streamlit runs page files as __main__; tests import the functions above without drawing.
if __name__ == "__main__":
    page()
