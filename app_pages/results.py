"""One result in detail, and two to four side by side (the Gallery page's two other views)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pandas as pd
import streamlit as st

from app_pages import auth, common, params_form
from app_pages.params_form import label as form_label
from app_pages.sweep import differing_fields
from engine.masks import is_everywhere
from engine.params import Params
from gallery import Gallery, GalleryError, NotFound, Run
from gallery.timelapse import timelapse_webp
from worker.job import content_shape

MAX_COMPARE = 4


# --- pure helpers ---------------------------------------------------------------------------

def fmt_value(field: str, value: Any, run: Run | None = None) -> str:
    """A parameter as a person reads it; images by their names, not their stored paths."""
    if run is not None and field == "content":
        return run.content_name
    if run is not None and field == "styles":
        return ", ".join(run.style_names)
    if run is not None and field == "style_masks" and value:
        return ", ".join(f"{name}: {'everywhere' if is_everywhere(m) else 'region'}"
                         for m, name in zip(value, run.style_names))
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt_value(field, v) for v in value) if value else "(equal)"
    return str(value)


def param_table(run: Run) -> pd.DataFrame:
    """Every parameter of a run, marking the ones that differ from the engine's defaults."""
    defaults = Params().to_dict()
    rows = [{"parameter": f, "value": fmt_value(f, v, run),
             "default": "" if f in ("content", "styles") or v == defaults[f] else fmt_value(f, defaults[f])}
            for f, v in run.params.to_dict().items()]
    return pd.DataFrame(rows).set_index("parameter")


def compare_table(runs: list[Any]) -> tuple[pd.DataFrame, list[str]]:
    """Parameters (rows) by run (columns), and the rows that differ between the runs."""
    fields = list(Params().to_dict())
    data = {f"#{r.id}": [fmt_value(f, getattr(r.params, f), r) for f in fields] for r in runs}
    extra = {"duration": lambda r: common.fmt_duration(r.duration), "device": lambda r: r.ran_on or "—",
             "weights": lambda r: r.weights_name or "—"}
    table = pd.DataFrame(data, index=fields)
    for name, get in extra.items():
        table.loc[name] = [get(r) for r in runs]
    differing = [f for f in differing_fields([r.params for r in runs]) if f not in ("content", "styles")]
    # Paths differ for equal images re-uploaded under other names; compare what is shown.
    differing += [f for f in ("content", "styles") if table.loc[f].nunique() > 1]
    differing += [name for name in extra if table.loc[name].nunique() > 1 and name != "duration"]
    return table, differing


def scrub_frames(previews: list[tuple[int, Path]], result: Path | None) -> list[tuple[str, Path]]:
    """(label, image) for the slider: saved intermediate iterations in order, the result last."""
    frames = [(f"iteration {it}", Path(p)) for it, p in sorted(previews) if Path(p).is_file()]
    if result is not None and result.is_file():
        frames.append(("result", result))
    return frames


def display_width(path: Path, at_least: int = 384) -> int | Literal["content"]:
    """Native size (capped by the column), except that tiny results are scaled up to be seen."""
    from PIL import Image

    try:
        with Image.open(path) as img:  # reads the header only
            width = img.width
    except OSError:
        return "content"
    return at_least if width < at_least else "content"


def parse_ids(text: str | None) -> list[int]:
    """"3,7,9" -> [3, 7, 9]: unique ids, in order, at most MAX_COMPARE."""
    ids: list[int] = []
    for part in (text or "").split(","):
        if part.strip().isdecimal() and int(part) not in ids:
            ids.append(int(part))
    return ids[:MAX_COMPARE]


# --- detail view ----------------------------------------------------------------------------

def _back() -> None:
    for key in ("run", "compare"):
        st.query_params.pop(key, None)


def rerun_with(run_id: int) -> None:
    """Opens Create pre-filled with a run's settings. (Not from a widget callback: pages are
    only known to switch_page once st.navigation has run.)"""
    st.switch_page(common.PAGE_CREATE, query_params={"from": str(run_id)})


EDIT_ERROR = "edit_error"


PRINT_DPI = 300
PRINT_CHOICES = ("2×", "4×", "Size in px", "Inches at 300 dpi")


def print_size(run: Run, choice: str, amount: float) -> int:
    """The longest side of a print of `run`: twice or four times its size, a size in px, or a
    length in inches at PRINT_DPI."""
    if choice == "2×":
        return 2 * run.params.size
    if choice == "4×":
        return 4 * run.params.size
    if choice == "Inches at 300 dpi":
        return round(amount * PRINT_DPI)
    return int(amount)


def print_params(run: Run, size: int, iterations: int) -> Params:
    """The same settings at `size`, starting from the run's result and running only the scales
    above its size (the result is those scales' work already done)."""
    return run.params.with_changes(size=size, iterations=iterations, init="image", init_image=str(run.result_path),
                                   multiscale_from=run.params.size)


def make_print(gallery: Gallery, run: Run, size: int, iterations: int) -> int:
    """Queues a print of `run` (engine.params validates the size); its id. The new run records
    the one it grew from (Gallery.prints_of goes back)."""
    return gallery.submit(print_params(run, size, iterations), owner=auth.session_owner(), grown_from=run.id,
                    title=f"Print of #{run.id}" + (f": {run.title}" if run.title else ""))


def print_plan_line(params: Params, shape: tuple[int, int] | None) -> str:
    """How a print would be computed on this machine's CPU, from engine.memory: "the whole image
    at once" or "tiled, 12 tiles of 1024 px", or why it would not fit."""
    from engine import memory

    cpu = params.with_changes(device="cpu")
    available = memory.within_budget(memory.cpu_available_bytes(), memory.budget_from_env())
    refused = memory.refusal(cpu, available, "this machine", shape)
    if refused:
        return refused
    found = memory.plan(cpu, available, shape)
    return f"On this machine's CPU: {found.evaluation or 'the whole image at once'}."


def _print_form(gallery: Gallery, run: Run) -> None:
    """The popover of "Make a print": how large, how many iterations a scale, what it takes."""
    from engine.params import MAX_SIZE

    choice = st.radio("Size", PRINT_CHOICES, key="print_choice", horizontal=True)
    choice = choice if choice in PRINT_CHOICES else PRINT_CHOICES[0]
    amount: float = 0
    if choice == "Size in px":
        amount = st.number_input("Longest side (px)", run.params.size + 16, MAX_SIZE, 2 * run.params.size, step=256,
                                 key="print_px")
    elif choice == "Inches at 300 dpi":
        amount = st.number_input("Longest side (inches)", 1.0, MAX_SIZE / PRINT_DPI, 10.0, step=1.0, key="print_in")
    size = print_size(run, choice, amount or 0)
    iterations = st.number_input("Iterations at each new size", 1, 10_000, min(run.params.iterations, 200),
                                 key="print_iterations")
    params = print_params(run, size, int(iterations) if isinstance(iterations, (int, float)) else 200)
    problems = params_form.validation_errors(params, need_images=False)
    scales = " and ".join(f"{s} px" for s in params.scale_sizes())
    st.caption(f"{size} px ({size / PRINT_DPI:.1f} in at {PRINT_DPI} dpi), from this {run.params.size} px result: "
               f"{scales}. " + print_plan_line(params, content_shape(gallery, run)))
    for field, message in problems.items():
        st.error(f"{form_label(field)} {message}")
    if st.button("Make the print", key="make_print", type="primary", icon=":material/print:",
                 disabled=bool(problems) or size <= run.params.size):
        try:
            run_id = make_print(gallery, run, size, params.iterations)
        except (GalleryError, ValueError) as exc:  # ParamsError is a ValueError
            st.error(common.escape_md(str(exc)))
            return
        st.session_state["toast"] = f"Queued print #{run_id} of run #{run.id}"
        st.switch_page(common.PAGE_CREATE, query_params={"run": str(run_id)})


def _lineage(gallery: Gallery, run: Run) -> None:
    """The run a print grew from, and the prints grown from this one: links both ways."""
    # Buttons, not page links: a link to the page it is on changes the page but not its URL.
    if run.grown_from:
        st.button(f"Grown from #{run.grown_from}", key="grown_from", icon=":material/north_west:", type="tertiary",
                  on_click=_go_to, args=(run.grown_from,))
    for made in gallery.prints_of(run.id):
        st.button(f"Print #{made.id} · {made.params.size} px · {made.status}", key=f"print-{made.id}",
                  icon=":material/print:", type="tertiary", on_click=_go_to, args=(made.id,))


def use_as_content(gallery: Gallery, run: Run) -> None:
    """This result, stored as an input, as the Create page's content. (Not from a callback:
    switch_page needs the navigation, as rerun_with.)"""
    from app_pages import inputs

    try:
        path, name = inputs.store(gallery, gallery.export_png(run.id), common.download_name(run), "content")
    except (GalleryError, OSError, ValueError) as exc:  # ImageError is a ValueError
        st.error(common.escape_md(str(exc)))
        return
    inputs.choose(st.session_state, "content", path, name)
    st.switch_page(common.PAGE_CREATE)


def _toggle_favorite(run_id: int) -> None:
    _edit(auth.set_favorite, run_id, st.session_state.get(f"favorite-{run_id}") is True)


def _save_title_tags(run_id: int) -> None:
    title, tags = (st.session_state.get(f"{name}-{run_id}") for name in ("title", "tags"))
    _edit(auth.set_title_tags, run_id, title if isinstance(title, str) else "", tags if isinstance(tags, str) else "")


def _edit(change: Any, run_id: int, *values: Any) -> None:
    """An edit after the owner check (the widgets are disabled for others' runs; this stops a
    hand-made request too); a refusal is shown above the run."""
    try:
        change(common.get_gallery(), run_id, *values)
    except (GalleryError, auth.NotAllowed) as exc:
        st.session_state[EDIT_ERROR] = str(exc)


# The dialog is (re)opened on every run while a deletion is pending, so its buttons work whether
# a click reruns only the dialog (the browser) or the whole script (AppTest).
PENDING_DELETE = "pending_delete"


def _ask_delete(run_id: int) -> None:
    st.session_state[PENDING_DELETE] = run_id


def _drop_pending_delete() -> None:
    st.session_state.pop(PENDING_DELETE, None)


@st.dialog("Delete this result?", on_dismiss=_drop_pending_delete)
def confirm_delete(run_id: int) -> None:
    st.write(f"Run #{run_id}, its image, previews and thumbnail are deleted for everyone. "
             "This cannot be undone.")
    left, right = st.columns(2)
    if left.button("Delete", key="confirm_delete", type="primary", icon=":material/delete:"):
        _drop_pending_delete()
        try:
            auth.delete(common.get_gallery(), run_id)
        except (GalleryError, auth.NotAllowed) as exc:  # e.g. it started running meanwhile
            st.error(common.escape_md(str(exc)))
            return
        _back()
        common.unselect([run_id])
        st.session_state["toast"] = f"Deleted run #{run_id}"
        st.rerun()
    if right.button("Keep it", key="keep", on_click=_drop_pending_delete):
        st.rerun()


def delete_runs(gallery: Gallery, ids: list[int]) -> tuple[list[int], list[str]]:
    """Deletes each run this person may delete: (the ids deleted, why each other one was kept)."""
    deleted, refused = [], []
    for run_id in ids:
        try:
            auth.delete(gallery, run_id)
            deleted.append(run_id)
        except NotFound:
            deleted.append(run_id)  # gone already
        except (GalleryError, auth.NotAllowed) as exc:  # running, or someone else's
            refused.append(str(exc))
    return deleted, refused


def _facts(run: Run) -> list[tuple[str, str]]:
    losses = ", ".join(f"{k} {common.fmt_loss(v)}" for k, v in (run.losses or {}).items()) or "—"
    weights = run.weights_name or run.params.weights
    if run.weights_sha256:
        weights += f" (sha256 {run.weights_sha256[:12]}…)"
    return [("Status", run.status), ("Owner", run.owner or "—"), ("Created", common.fmt_when(run.created)),
            ("Duration", common.fmt_duration(run.duration)), ("Device", run.ran_on or "—"),
            ("Worker", run.worker or "—"), ("Weights", weights), ("Final losses", losses)]


def _inputs(run: Run) -> None:
    name = common.escape_md
    paths = [(run.params.content, f"Content: {name(run.content_name)}")]
    paths += [(p, f"Style: {name(n)}") for p, n in zip(run.params.styles, run.style_names)]
    paths += [(m, f"Region: {name(n)}") for m, n in zip(run.params.style_masks, run.style_names) if not is_everywhere(m)]
    cols = st.columns(max(len(paths), 5))  # thumbnails, not posters
    for col, (path, caption) in zip(cols, paths):
        preview = common.input_thumbnail(path)
        if preview:
            col.image(preview, caption=caption, width="stretch")
        else:
            col.caption(f"{caption} (file missing)")


def _show_clip(gallery: Gallery, run: Run, animation: Path) -> None:
    """The styled clip playing (`animation`: its WebP), and a slider to look at one frame at a time."""
    content = gallery.get_input_or_none(run.content_sha256) if run.content_sha256 else None
    width = display_width(animation)
    common.show_animation(animation, width if isinstance(width, int) else None,
                          common.clip_caption(run.frames, content.duration_ms if content else None))
    frames = gallery.frames(run.id)
    if len(frames) > 1:
        _frame_view(frames, run)


# The two sliders below are fragments: moving one redraws it and its image alone. A whole page's
# redraw sends every element to the browser again, the playing animation's bytes among them.

@auth.fragment
def _frame_view(frames: list[Path], run: Run) -> None:
    """A clip's finished frames, one at a time, each downloadable."""
    k = st.slider("Frame", 1, len(frames), 1, key=f"frame-{run.id}")
    k = min(max(1, k if isinstance(k, int) else 1), len(frames))
    common.show_image(frames[k - 1], width=display_width(frames[k - 1]), caption=f"Frame {k} of {len(frames)}")
    st.download_button(f"Download frame {k} (PNG)", data=frames[k - 1].read_bytes, mime="image/png",
                       file_name=common.download_name(run, ".png", f"frame{k}"), key="download_frame",
                       icon=":material/download:")


@auth.fragment
def _iteration_view(frames: dict[str, Path], run_id: int) -> None:
    """A still run's saved iterations, scrubbed through."""
    labels = list(frames)
    choice = st.select_slider("Iterations", options=labels, value=labels[-1], key=f"scrub-{run_id}")
    choice = choice if choice in frames else labels[-1]
    # Native size up to the column's width: small results are not blown up into mush; a print
    # is shown from a copy at most common.DISPLAY_SIDE px wide (the download is the whole PNG).
    common.show_image(frames[choice], width=display_width(frames[choice]), caption=choice)


def _clip_downloads(run: Run) -> None:
    for path, label, mime, key in ((run.animation_path, "Download animation (WebP)", "image/webp", "download_webp"),
                                   (run.gif_path, "Download GIF", "image/gif", "download_gif")):
        found = common.existing(path)
        if found:
            st.download_button(label, data=found.read_bytes, file_name=common.download_name(run, found.suffix),
                               mime=mime, key=key, icon=":material/movie:")


def _go_to(run_id: int) -> None:
    st.query_params["run"] = str(run_id)


def show_detail(gallery: Gallery, run_id: int, neighbours: tuple[int | None, int | None] = (None, None)) -> None:
    """One run; `neighbours`: the runs before and after it in the grid (the arrow keys go there)."""
    try:
        run = gallery.get(run_id)
    except NotFound:
        st.warning(f"Run #{run_id} is not in the gallery (deleted?).")
        st.button("Back to the gallery", key="back", on_click=_back, icon=":material/arrow_back:")
        return
    _detail_header(run, neighbours)
    image_col, side = st.columns([3, 2], gap="large")
    with image_col:
        _detail_image(gallery, run)
    with side:
        _detail_actions(gallery, run)
    st.markdown("**Inputs**")
    _inputs(run)
    st.markdown("**Parameters**")
    st.dataframe(param_table(run), width="stretch")


def _detail_header(run: Run, neighbours: tuple[int | None, int | None]) -> None:
    top = st.columns([2.3, 5, 0.9, 0.9], vertical_alignment="center")  # wide enough for "Gallery" and its Esc
    top[0].button("Gallery", key="back", on_click=_back, icon=":material/arrow_back:", shortcut="Esc")
    top[1].subheader(f"#{run.id} · {common.escape_md(common.run_label(run))}", anchor=False)
    before, after = neighbours
    top[2].button("", key="previous_run", icon=":material/chevron_left:", disabled=before is None,
                  on_click=_go_to, args=(before,), shortcut="Left", help="The one before (←)")
    top[3].button("", key="next_run", icon=":material/chevron_right:", disabled=after is None,
                  on_click=_go_to, args=(after,), shortcut="Right", help="The one after (→)")
    if st.session_state.get(EDIT_ERROR):
        st.error(common.escape_md(st.session_state.pop(EDIT_ERROR)), icon=":material/lock:")


def _detail_image(gallery: Gallery, run: Run) -> None:
    frames = dict(scrub_frames(gallery.previews(run.id), common.existing(run.result_path)))
    animation = common.existing(run.animation_path) if run.is_clip else None
    if animation is not None:
        _show_clip(gallery, run, animation)
    elif len(frames) > 1:
        _iteration_view(frames, run.id)
    elif frames:
        image = next(iter(frames.values()))
        common.show_image(image, width=display_width(image))
    else:
        st.info(f"No image: the run is {run.status}." + (f" {common.escape_md(run.error)}" if run.error else ""))


def _detail_actions(gallery: Gallery, run: Run) -> None:
    """Favorite, downloads, re-run, print, lineage, facts, title and tags, delete."""
    run_id = run.id
    mine = auth.may_change(run.owner, auth.session_owner())
    st.toggle("Favorite", value=run.favorite, key=f"favorite-{run_id}", on_change=_toggle_favorite,
              args=(run_id,), disabled=not mine)
    if run.status == "done":
        _downloads(gallery, run)
    again = st.container(horizontal=True)
    if again.button("Re-run with these settings", key="rerun", icon=":material/replay:"):
        rerun_with(run_id)
    if run.status == "done" and again.button("Use as content", key="use_as_content", icon=":material/input:",
                                             help="Style this result again: it becomes the content on Create"):
        use_as_content(gallery, run)
    if run.status == "done" and not run.is_clip and common.existing(run.result_path):
        with st.popover("Make a print", icon=":material/print:",
                        help="The same settings at a larger size, starting from this result"):
            _print_form(gallery, run)
    _lineage(gallery, run)
    st.markdown("  \n".join(f"**{label}:** {common.escape_md(value)}" for label, value in _facts(run)))
    with st.form(f"meta-{run_id}", border=False):
        st.text_input("Title", value=run.title, key=f"title-{run_id}", disabled=not mine)
        st.text_input("Tags", value=run.tags, key=f"tags-{run_id}", help="Comma-separated", disabled=not mine)
        st.form_submit_button("Save title and tags", on_click=_save_title_tags, args=(run_id,), disabled=not mine)
    st.button("Delete…", key="delete", icon=":material/delete:", on_click=_ask_delete, args=(run_id,),
              disabled=run.status == "running" or not mine,
              help="Cancel a running job first." if run.status == "running" else None)
    if st.session_state.get(PENDING_DELETE) == run_id:
        confirm_delete(run_id)


def _downloads(gallery: Gallery, run: Run) -> None:
    run_id = run.id
    if run.is_clip:
        _clip_downloads(run)
    st.download_button("Download PNG" + (" (first frame)" if run.is_clip else ""),
                       data=lambda: gallery.export_png(run_id), file_name=common.download_name(run),
                       mime="image/png", key="download", icon=":material/download:",
                       help="The PNG carries every parameter, so the run can be repeated.")
    st.download_button("Download the time-lapse", data=lambda: timelapse_webp(gallery, run_id),
                       file_name=common.download_name(run, ".webp", "timelapse"), mime="image/webp",
                       key="download_progress", icon=":material/animation:",
                       help="The saved iterations in order, the result held at the end (animated WebP).")


# --- compare view ---------------------------------------------------------------------------

def _highlight(differing: list[str]):
    def style(row: pd.Series) -> list[str]:
        return ["background-color: #fff3cd; font-weight: 600" if row.name in differing else ""] * len(row)
    return style


def wipe(a: Any, b: Any, at: float) -> Any:
    """A over B: A's left `at` (0..1) of the width, B's right rest (B fitted to A's size), a thin
    light line between them."""
    from PIL import Image, ImageDraw

    a = a.convert("RGB")
    b = b.convert("RGB").resize(a.size, Image.Resampling.LANCZOS)
    x = round(min(1.0, max(0.0, at)) * a.width)
    out = b.copy()
    out.paste(a.crop((0, 0, x, a.height)), (0, 0))
    if 0 < x < a.width:
        ImageDraw.Draw(out).line([(x, 0), (x, a.height)], fill=(255, 255, 255), width=max(1, a.width // 400))
    return out


@auth.fragment
def _wipe_view(runs: list[Any]) -> None:
    """Two results over each other, a slider moving the edge between them."""
    import io

    from PIL import Image

    labels = {run.id: f"#{run.id} · {common.run_label(run)}" for run in runs}
    left, right = st.columns(2)
    a = left.selectbox("A (left)", list(labels), index=0, format_func=lambda i: labels.get(i, str(i)), key="wipe_a")
    b = right.selectbox("B (right)", list(labels), index=1, format_func=lambda i: labels.get(i, str(i)), key="wipe_b")
    by_id = {run.id: run for run in runs}
    first, second = (common.display_image(by_id[i].result_path) if i in by_id else None for i in (a, b))
    if first is None or second is None:
        st.info("Both need a result image.")
        return
    at = st.slider("Wipe", 0, 100, 50, key="wipe_at", format="%d%%", label_visibility="collapsed")
    left_image, right_image = Image.open(io.BytesIO(first)), Image.open(io.BytesIO(second))
    st.image(wipe(left_image, right_image, at / 100 if isinstance(at, int) else 0.5), width="stretch",
             caption=f"{common.escape_md(labels[a])} | {common.escape_md(labels[b])}")


def show_compare(gallery: Gallery, ids: list[int]) -> None:
    runs = []
    for run_id in ids:
        try:
            runs.append(gallery.get(run_id))
        except NotFound:
            st.caption(f"Run #{run_id} no longer exists.")
    top = st.columns([1, 5], vertical_alignment="center")
    top[0].button("Gallery", key="back", on_click=_back, icon=":material/arrow_back:")
    top[1].subheader(f"Compare {len(runs)} results", anchor=False)
    if len(runs) < 2:
        st.info("Pick two to four results in the gallery to compare them.")
        return
    side_by_side, one_over_other = st.tabs(["Side by side", "Wipe (A/B)"])
    with side_by_side:
        cols = st.columns(len(runs))
        for col, run in zip(cols, runs):
            with col:
                image = common.display_image(run.result_path) or common.display_image(run.preview_path)
                if image:
                    st.image(image, width="stretch")
                st.caption(f"#{run.id} · {common.escape_md(common.run_label(run))}")
    with one_over_other:
        _wipe_view(runs)
    table, differing = compare_table(runs)
    only = st.toggle("Only differing parameters", value=False, key="compare_only_diff")
    shown = table.loc[differing] if only and differing else table
    st.caption("Highlighted: " + (", ".join(differing) if differing else "no differences"))
    st.dataframe(shown.style.apply(_highlight(differing), axis=1), width="stretch",
                 height=min(35 * (len(shown) + 1) + 3, 900))
