"""Gallery: every result as a paginated grid of thumbnails, with filters in the sidebar.

`?run=<id>` shows one result in detail and `?compare=<id>,<id>` two to four side by side, so
both can be linked to. Only one page of rows is read from SQLite per run (list_runs with
limit/offset, count_runs for the total), and cards show the small thumbnail files, so the page
stays quick with thousands of results.
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import streamlit as st

from app_pages import common, results
from engine.params import MAX_SIZE, MIN_SIZE
from gallery import SORTS as STORE_SORTS
from gallery import Gallery, NotFound, Run, RunFilter
from gallery.db import STATUSES

COLUMNS = 5
PAGE_SIZES = (20, 40, 100)
ANY = "any"
STATUS_OPTIONS = ("done", ANY, *[s for s in STATUSES if s != "done"])
SORT_LABELS = {"newest": "Newest first", "oldest": "Oldest first", "duration": "Longest first",
               "title": "Title"}
SORTS = {k: SORT_LABELS.get(k, k) for k in STORE_SORTS}  # what the gallery can sort by


def filters_from_state(state: Mapping[Any, Any]) -> RunFilter:
    """The sidebar's values as the filter of list_runs/count_runs."""
    f: dict[str, Any] = {}
    if state.get("g_status", "done") != ANY:
        f["status"] = state.get("g_status", "done")
    if state.get("g_style"):
        f["style"] = state["g_style"]
    if state.get("g_favorites"):
        f["favorite"] = True
    if (state.get("g_search") or "").strip():
        f["search"] = state["g_search"].strip()
    low, high = state.get("g_size") or (MIN_SIZE, MAX_SIZE)
    if low > MIN_SIZE:
        f["min_size"] = low
    if high < MAX_SIZE:
        f["max_size"] = high
    dates = tuple(state.get("g_dates") or ())
    if len(dates) >= 1 and isinstance(dates[0], date):
        f["since"] = datetime.combine(dates[0], time.min).astimezone(UTC)
    if len(dates) == 2 and isinstance(dates[1], date):  # inclusive: until the next midnight
        f["until"] = datetime.combine(dates[1] + timedelta(days=1), time.min).astimezone(UTC)
    return RunFilter(**f)


def neighbours(gallery: Gallery, run_id: int, state: Mapping[Any, Any], window: int = 1000) -> tuple[int | None, int | None]:
    """The runs before and after `run_id` in the grid's order (its filters and sort), for the
    detail view's arrows; None at either end, or when the run is not among the first `window`."""
    sort = state.get("g_sort", "newest")
    ids = gallery.run_ids(filters_from_state(state), sort=sort if sort in SORTS else "newest", limit=window)
    if run_id not in ids:
        return None, None
    i = ids.index(run_id)
    return (ids[i - 1] if i > 0 else None), (ids[i + 1] if i + 1 < len(ids) else None)


def page_count(total: int, per_page: int) -> int:
    return max(1, -(-total // per_page))


def clamp_page(page: Any, pages: int) -> int:
    return min(max(1, int(page or 1)), pages)


def style_options(gallery: Gallery) -> dict[str, str]:
    """Style filter choices, sha256 -> label, for every image used as a style. By sha256, not
    name: two different paintings can both be uploaded as "style.jpg"."""
    images = gallery.list_inputs(kind="style", limit=500)
    names = [image.name for image in images]
    return {image.sha256: image.name if names.count(image.name) == 1 else f"{image.name} ({image.sha256[:6]})"
            for image in images}


# --- widgets ----------------------------------------------------------------------------------

def _reset_page() -> None:
    st.session_state["g_page"] = 1


def _sidebar(gallery: Gallery) -> None:
    with st.sidebar:
        st.header("Filter", anchor=False)
        st.text_input("Search titles, tags, image names", key="g_search", on_change=_reset_page,
                      placeholder="e.g. starry")
        st.selectbox("Status", STATUS_OPTIONS, key="g_status", on_change=_reset_page)
        styles = style_options(gallery)
        st.selectbox("Style image", list(styles), index=None, key="g_style", placeholder="Any style",
                     format_func=lambda k: styles.get(k, str(k)), on_change=_reset_page)
        st.toggle("Favorites only", key="g_favorites", on_change=_reset_page)
        st.date_input("Created between", value=[], key="g_dates", on_change=_reset_page)
        st.slider("Size (px)", MIN_SIZE, MAX_SIZE, (MIN_SIZE, MAX_SIZE), step=16, key="g_size",
                  on_change=_reset_page)
        st.selectbox("Sort", list(SORTS), format_func=lambda k: SORTS.get(k, str(k)), key="g_sort", on_change=_reset_page)
        st.selectbox("Per page", PAGE_SIZES, key="g_per_page", on_change=_reset_page)


SELECTED = common.SELECTED
MAX_SELECTED = 100


def _toggle_selected(run_id: int) -> None:
    chosen: list[int] = st.session_state.setdefault(SELECTED, [])
    if st.session_state.get(f"sel-{run_id}") is True:
        if run_id not in chosen and len(chosen) < MAX_SELECTED:
            chosen.append(run_id)
    elif run_id in chosen:
        chosen.remove(run_id)


def _clear_selected() -> None:
    common.unselect(list(st.session_state.get(SELECTED, [])))


def _open(run_id: int) -> None:
    st.query_params["run"] = str(run_id)


def _compare() -> None:
    st.query_params["compare"] = ",".join(str(i) for i in st.session_state.get(SELECTED, []))


def selection_zip(gallery: Gallery, ids: list[int]) -> bytes:
    """The selected finished runs as one zip (PNGs with their parameters, inputs, runs.csv), as
    `python -m gallery export` writes it."""
    import io

    from gallery.exchange import export_zip

    done = []
    for run_id in ids:
        try:
            if gallery.get(run_id).status == "done":
                done.append(run_id)
        except NotFound:  # deleted since it was ticked
            continue
    out = io.BytesIO()
    export_zip(gallery, done, out)
    return out.getvalue()


PENDING_BULK_DELETE = "pending_bulk_delete"


def _ask_bulk_delete() -> None:
    st.session_state[PENDING_BULK_DELETE] = list(st.session_state.get(SELECTED, []))


def _drop_bulk_delete() -> None:
    st.session_state.pop(PENDING_BULK_DELETE, None)


@st.dialog("Delete the selected results?", on_dismiss=_drop_bulk_delete)
def confirm_bulk_delete(ids: list[int]) -> None:
    st.write(f"{len(ids)} run{'s' if len(ids) != 1 else ''}, with their images, previews and thumbnails, "
             "are deleted for everyone.")
    left, right = st.columns(2)
    if left.button("Delete them", key="confirm_bulk_delete", type="primary", icon=":material/delete:"):
        _drop_bulk_delete()
        deleted, refused = results.delete_runs(common.get_gallery(), ids)
        common.unselect(deleted)
        st.session_state["toast"] = f"Deleted {len(deleted)} run{'s' if len(deleted) != 1 else ''}" + \
            (f"; kept {len(refused)}: {refused[0]}" if refused else "")
        st.rerun()
    if right.button("Keep them", key="keep_bulk", on_click=_drop_bulk_delete):
        st.rerun()


# A thumbnail opens its run: the card's Open button is laid over the picture, invisible, so a
# click on the picture is a click on it (in this tab; an image's own link opens a new one).
CARD_CSS = """<style>
[class*="st-key-thumb-"] { position: relative; }
[class*="st-key-thumb-"] [class*="st-key-open-"] { position: absolute; inset: 0; z-index: 1; margin: 0; }
[class*="st-key-thumb-"] [class*="st-key-open-"] * { width: 100%; height: 100%; }
[class*="st-key-thumb-"] [class*="st-key-open-"] button { opacity: 0; cursor: zoom-in; }
</style>"""


def _card(run: Run, selected: list[int]) -> None:
    # The container's key is the automation hook: CSS class st-key-run-<id>.
    with st.container(border=True, key=f"run-{run.id}"):
        with st.container(key=f"thumb-{run.id}"):
            thumb = common.existing(run.thumb_path) or common.existing(run.preview_path)
            if thumb:
                st.image(str(thumb), width="stretch")
            else:
                st.caption(f"({run.status}, no image)")
            st.button(f"Open #{run.id}", key=f"open-{run.id}", on_click=_open, args=(run.id,), width="stretch")
        star = "★ " if run.favorite else ""
        st.markdown(f"**{star}#{run.id}** {common.escape_md(common.run_label(run))}")
        clip = f"{common.clip_caption(run.frames)} · " if run.is_clip else ""
        st.caption(f"{clip}{run.params.size} px · {common.fmt_duration(run.duration)} · {common.fmt_when(run.created)}")
        st.checkbox("Select", key=f"sel-{run.id}", value=run.id in selected, on_change=_toggle_selected,
                    args=(run.id,), help="Compare, download or delete the selected runs together")


def _pager(total: int, per_page: int) -> tuple[int, int]:
    pages = page_count(total, per_page)
    current = clamp_page(st.session_state.get("g_page", 1), pages)
    st.session_state["g_page"] = current
    return current, pages


def _set_page(page: int) -> None:
    st.session_state["g_page"] = page


def show_grid(gallery: Gallery) -> None:
    _sidebar(gallery)
    filters = filters_from_state(st.session_state)
    per_page = st.session_state.get("g_per_page", PAGE_SIZES[0])
    total = gallery.count_runs(filters)
    current, pages = _pager(total, per_page)
    runs = gallery.list_runs(filters, sort=st.session_state.get("g_sort", "newest"),
                       limit=per_page, offset=(current - 1) * per_page)

    head = st.columns([2, 2, 2, 2, 1.5], vertical_alignment="center")
    head[0].caption(f"{total} result{'s' if total != 1 else ''}" + (" (filtered)" if filters != RunFilter(status="done") else ""))
    selected = st.session_state.setdefault(SELECTED, [])
    head[1].button(f"Compare ({len(selected)})", key="compare", on_click=_compare,
                   disabled=not 2 <= len(selected) <= results.MAX_COMPARE, icon=":material/compare:",
                   help=f"Two to {results.MAX_COMPARE} selected runs side by side")
    head[2].download_button(f"Download ({len(selected)})", data=lambda: selection_zip(gallery, selected),
                            file_name=f"style-transfer-{len(selected)}-runs.zip", mime="application/zip",
                            key="download_selected", disabled=not selected, icon=":material/download:",
                            help="The selected results as a zip: PNGs with their settings, the input images, a CSV")
    head[3].button(f"Delete ({len(selected)})…", key="delete_selected", on_click=_ask_bulk_delete,
                   disabled=not selected, icon=":material/delete:")
    if selected:
        head[4].button("Clear", key="clear_selected", type="tertiary", on_click=_clear_selected)
    if st.session_state.get(PENDING_BULK_DELETE):
        confirm_bulk_delete(st.session_state[PENDING_BULK_DELETE])
    if not runs:
        st.info("No results match." if filters != RunFilter(status="done") else
                "No results yet: queue one on the Create page.")
    st.html(CARD_CSS)
    for start in range(0, len(runs), COLUMNS):
        for col, run in zip(st.columns(COLUMNS), runs[start:start + COLUMNS]):
            with col:
                _card(run, selected)
    if pages > 1:
        nav = st.columns([1, 2, 1], vertical_alignment="center")
        nav[0].button("Previous", key="prev_page", disabled=current <= 1, on_click=_set_page,
                      args=(current - 1,), icon=":material/chevron_left:")
        nav[1].caption(f"Page {current} of {pages}")
        nav[2].button("Next", key="next_page", disabled=current >= pages, on_click=_set_page,
                      args=(current + 1,), icon=":material/chevron_right:")


def page() -> None:
    gallery = common.get_gallery()
    common.current_owner()
    st.title("Gallery")
    run_id = st.query_params.get("run", "")
    if run_id.isdecimal():
        results.show_detail(gallery, int(run_id), neighbours(gallery, int(run_id), st.session_state))
    elif st.query_params.get("compare"):
        results.show_compare(gallery, results.parse_ids(st.query_params["compare"]))
    else:
        show_grid(gallery)


if __name__ == "__main__":
    page()
