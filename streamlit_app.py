"""Neural style transfer studio: `make run` serves this on http://127.0.0.1:8501.

Three pages over one data folder ($STUDIO_DATA, default ./data): Create queues runs, Queue shows
everyone's jobs, Gallery browses results. Jobs run in worker processes this server starts and
supervises (worker/supervisor.py); they report through SQLite, so every session and tab sees the
same state, and watching a job costs the job nothing.
"""
from __future__ import annotations

import streamlit as st

from app_pages import auth, common

st.set_page_config(page_title="Style transfer studio", page_icon=":material/palette:", layout="wide")
auth.gate()  # share mode: nothing below runs until this browser has given the password

try:
    common.get_gallery()
except Exception as exc:  # GalleryError for a corrupt or foreign data folder: say so and stop
    st.error(f"Cannot open the data folder {common.data_dir()}: {common.escape_md(str(exc))}")
    st.stop()
try:
    common.ensure_worker()
except Exception as exc:  # browsing the gallery still works without one
    st.warning(f"No worker could be started, so jobs will wait in the queue: {common.escape_md(str(exc))}")

owner = common.current_owner()
if "toast" in st.session_state:  # said by the run before, which ended in st.rerun(): "Queued run #3"
    st.toast(common.escape_md(st.session_state.pop("toast")), icon=":material/info:")
nav = st.navigation([
    st.Page(common.PAGE_CREATE, title="Create", icon=":material/brush:", default=True),
    st.Page(common.PAGE_QUEUE, title="Queue", icon=":material/format_list_numbered:"),
    st.Page(common.PAGE_GALLERY, title="Gallery", icon=":material/photo_library:"),
])
with st.sidebar:
    st.caption(f"You are **{owner}**")
    common.worker_panel()
nav.run()
