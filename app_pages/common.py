"""What every page shares: the data folder, the gallery and worker handles, the owner id and
small formatting helpers. Everything but the `st.*` glue is a plain function, tested directly."""
from __future__ import annotations

import io
import os
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import streamlit as st

from app_pages import auth, owner
from gallery import Run, RunFilter
from gallery.paths import data_dir_path
from gallery.times import to_utc
from worker.job import runs_on

# What engine.images accepts (it sniffs content; the extensions only filter the file picker).
IMAGE_TYPES = ["png", "jpg", "jpeg", "gif", "webp", "tif", "tiff", "bmp"]
# And what engine.clips adds for the content: videos (animated GIF and WebP are above).
VIDEO_TYPES = ["mp4", "webm", "mov"]
_IMAGE_SUFFIXES = {"." + t for t in IMAGE_TYPES}

# The Gallery's ticked runs (ids, in the order ticked): compared, downloaded or deleted together.
SELECTED = "selected"


def unselect(run_ids: list[int]) -> None:
    """Takes runs (deleted ones) out of the Gallery's selection, their ticks with them."""
    for run_id in run_ids:
        st.session_state.pop(f"sel-{run_id}", None)
    st.session_state[SELECTED] = [i for i in st.session_state.get(SELECTED, []) if i not in run_ids]

PAGE_CREATE = "app_pages/create.py"
PAGE_QUEUE = "app_pages/queue.py"
PAGE_GALLERY = "app_pages/gallery.py"


# --- data folder, gallery, worker -------------------------------------------------------------

def data_dir() -> Path:
    """The studio's data folder, as the gallery finds it ($STUDIO_DATA, else ./data)."""
    return data_dir_path()


def examples_dir() -> Path | None:
    value = os.environ.get("STUDIO_EXAMPLES")
    return Path(value).resolve() if value else None


@st.cache_resource(show_spinner=False)
def _gallery(path: str) -> Any:
    from gallery import Gallery

    return Gallery(Path(path))


def get_gallery() -> Any:
    """The process-wide Gallery for the data folder (keyed by path, so tests with their own
    temporary folders each get their own)."""
    return _gallery(str(data_dir()))


@st.cache_resource(show_spinner=False, validate=lambda s: s.alive)
def _supervisor(path: str) -> Any:
    from worker.supervisor import Supervisor

    return Supervisor(Path(path)).start()


def worker_enabled() -> bool:
    """STUDIO_WORKER=0 serves the UI without starting workers: the page tests use it (they play
    the worker themselves), and so can a setup whose workers live elsewhere."""
    return os.environ.get("STUDIO_WORKER", "1") != "0"


def ensure_worker() -> Any | None:
    """Starts the app's worker processes once (one per device of $STUDIO_DEVICES, default one
    "auto"), under a supervisor every session shares; None when workers are disabled."""
    return _supervisor(str(data_dir())) if worker_enabled() else None


def worker_lines(states: list[Any] | None, running: Sequence[Any] = ()) -> list[tuple[bool, str]]:
    """One (healthy, text) line per worker process for the sidebar: idle, running #id, or why
    it is not running. `running`: the runs in progress (their `worker` names who has them)."""
    if states is None:
        return [(True, "no workers started by this app (STUDIO_WORKER=0)")]
    lines = []
    for s in states:
        if s.alive:
            # A cluster's worker names the node after its own name ("ray@host:1 on node …").
            ids = [f"#{run.id}" for run in sorted(running, key=lambda r: r.id) if runs_on(run.worker, s.name)]
            doing = f"running {', '.join(ids)}" if ids else "idle"
            restarted = f"; restarted after: {s.last_error}" if s.last_error and s.starts > 1 else ""
            lines.append((not restarted, f"{s.device} worker {doing}{restarted}"))
        elif s.last_error:
            lines.append((False, f"{s.device} worker not running; retrying. {s.last_error}"))
        else:
            lines.append((True, f"{s.device} worker starting"))
    return lines


# As often as the Queue's table: the sidebar is the one place the workers are shown, and a line
# that lags the page says "idle" beside a running job.
WORKER_POLL_SECONDS = 2.0


@auth.fragment(run_every=WORKER_POLL_SECONDS)
def worker_panel() -> None:
    """The workers' lines, kept current (a job starts or ends without a rerun of the page)."""
    try:
        supervisor = ensure_worker()
    except Exception:  # said once, above the page, by streamlit_app.py
        return
    running = get_gallery().list_runs(RunFilter(status="running"), limit=100)
    for healthy, line in worker_lines(supervisor.states() if supervisor is not None else None, running):
        (st.caption if healthy else st.warning)(escape_md(line))


# --- owner id ---------------------------------------------------------------------------------

def current_owner() -> str:
    """This browser's owner id: from the session, else a hash of the browser's XSRF cookie (the
    same in every tab and across reloads). Never from the URL: a link someone shares must not
    make its reader them."""
    who = owner.resolve_owner(st.session_state.get("owner"), owner.xsrf_cookie(),
                              digits=16 if auth.share_mode() else 8)
    st.session_state["owner"] = who
    return who


# --- images -----------------------------------------------------------------------------------

def list_examples(folder: Path | None, kind: str) -> list[Path]:
    """Example images for `kind` ("content" or "style"). A folder laid out like
    shared/images (content/, style/) offers each subfolder to its own picker; loose images are
    offered to both."""
    if folder is None or not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() not in _IMAGE_SUFFIXES or not path.is_file():
            continue
        parts = {p.lower() for p in path.relative_to(folder).parts[:-1]}
        other = {"content": "style", "style": "content"}[kind]
        if other in parts and kind not in parts:
            continue
        if parts and not parts & {"content", "style"}:
            continue  # e.g. reference/: results, not inputs
        found.append(path)
    return found


# --- formatting -------------------------------------------------------------------------------

def fmt_when(value: Any) -> str:
    dt = to_utc(value)
    return dt.astimezone().strftime("%Y-%m-%d %H:%M") if dt else "—"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "—"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def fmt_range(low: float, high: float) -> str:
    """"20–35 s", "2–3 min", "about 1 h 05 min" when the two ends read alike."""
    if high < 120:
        lo, hi = int(low), int(round(high))
        return f"{lo}–{hi} s" if lo < hi else f"about {fmt_duration(high)}"
    if high < 3600:
        lo, hi = max(1, int(low // 60)), int(-(-high // 60))
        return f"{lo}–{hi} min" if lo < hi else f"about {fmt_duration((low + high) / 2)}"
    return f"{fmt_duration(low)} to {fmt_duration(high)}"


def elapsed_seconds(started: Any, now: datetime | None = None) -> float | None:
    start = to_utc(started)
    if start is None:
        return None
    now = now or datetime.now(UTC)
    return max(0.0, (now - start).total_seconds())


def seconds_until(when: datetime | None, now: datetime | None = None) -> float | None:
    if when is None:
        return None
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def fmt_loss(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else "—"


# GFM makes links of URLs, www. names and e-mail addresses even when their punctuation is
# escaped; an invisible word joiner (U+2060) inside the pattern stops it.
_LINKY = re.compile(r"(?i)(?<=[a-z0-9])(?=://|@)|(?<=www)(?=\.)")
_MD_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")


def escape_md(text: str) -> str:
    """Text shown as itself wherever Streamlit reads Markdown (st.markdown, captions, alerts,
    headers, widget labels, image captions): every ASCII punctuation mark escaped, so no
    emphasis, link, image, HTML, colour directive or formula; and no autolinked URL either.
    Everything a user wrote or a file brought in goes through this."""
    return _MD_PUNCTUATION.sub(r"\\\1", _LINKY.sub("\u2060", str(text)))


def clip_caption(frames: int, duration_ms: int | None = None) -> str:
    """"▶ 24 frames · 2.4 s": how a clip is marked (inputs on Create, results in the Gallery)."""
    length = f" · {duration_ms / 1000:.1f} s" if duration_ms else ""
    return f"▶ {frames} frames{length}"


def run_label(run: Run) -> str:
    """How a run is named in lists: its title, else "content × styles"."""
    if getattr(run, "title", ""):
        return run.title
    styles = " + ".join(Path(n).stem for n in (run.style_names or [])) or "?"
    return f"{Path(run.content_name or '?').stem} × {styles}"


def download_name(run: Run, suffix: str = ".png", part: str = "") -> str:
    """What a downloaded file is called: "tubingen-starry_night-run12-512px.png" (`part`, such
    as "frame3" or "progress", before the suffix): findable in a downloads folder, unlike
    style-run-12.png."""
    stems = [Path(run.content_name or "content").stem] + [Path(n).stem for n in (run.style_names or [])[:2]]
    words = "-".join(re.sub(r"[^0-9A-Za-z_]+", "_", stem).strip("_")[:30] or "image" for stem in stems)
    return f"{words}-run{run.id}-{run.params.size}px{'-' + part if part else ''}{suffix}"


PREVIEW_SIDE = 512
# Results are shown at most this wide: the PNG itself (a print can be 8192 px) is for downloading.
DISPLAY_SIDE = 1600


@st.cache_data(show_spinner=False, max_entries=500)
def _thumbnail_bytes(path: str, mtime_ns: int) -> bytes | None:
    from engine.clips import first_frame
    from engine.images import ImageError

    try:
        img = first_frame(path)
    except ImageError:
        return None
    return _jpeg(img, PREVIEW_SIDE, quality=85)


@st.cache_data(show_spinner=False, max_entries=50)
def _display_bytes(path: str, mtime_ns: int) -> bytes | None:
    from PIL import Image

    try:
        with Image.open(path) as img:
            if max(img.size) <= DISPLAY_SIDE:
                return Path(path).read_bytes()
            img.draft("RGB", (DISPLAY_SIDE, DISPLAY_SIDE))  # JPEG: decoded at a reduced scale
            small = img.convert("RGB")
    except OSError:
        return None
    return _jpeg(small, DISPLAY_SIDE, quality=90)


def _jpeg(img: Any, side: int, quality: int) -> bytes:
    img.thumbnail((side, side))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return out.getvalue()


def display_image(path: Any) -> bytes | None:
    """A result as the page shows it: the file itself up to DISPLAY_SIDE px, else a JPEG that
    size (cached), so a print's page stays quick; None when the file is gone."""
    found = existing(path)
    return _display_bytes(str(found), found.stat().st_mtime_ns) if found else None


def show_image(path: Any, width: int | Literal["stretch", "content"] = "stretch", caption: str | None = None) -> None:
    """A result (display_image) on the page, or a word that its file is gone."""
    image = display_image(path)
    if image is None:
        st.caption("(the image file is gone)")
    else:
        st.image(image, width=width, caption=caption)


def input_thumbnail(path: Any) -> bytes | None:
    """An input image as st.image can always show it: decoded by engine.images (every mode, EXIF
    orientation, first frame; a video's first frame), at most PREVIEW_SIDE px, cached. Given the path, st.image re-encodes
    the raw file itself: that fails for 16-bit PNGs and decodes a 24 MP photo on every rerun."""
    found = existing(path)
    return _thumbnail_bytes(str(found), found.stat().st_mtime_ns) if found else None


@st.cache_data(show_spinner=False, max_entries=50)
def _data_url(path: str, mtime_ns: int, mime: str) -> str:
    import base64

    return f"data:{mime};base64,{base64.b64encode(Path(path).read_bytes()).decode('ascii')}"


def show_animation(path: Path, width: int | None = None, caption: str = "", key: str = "animation") -> None:
    """An animated WebP that plays. st.image would re-encode it as a still JPEG (Streamlit keeps
    only GIFs as they are), so it goes to the browser as it is, in an <img> of its own."""
    size = f"width:{width}px;max-width:100%;" if width else "max-width:100%;"
    st.html(f'<img class="{key}" src="{_data_url(str(path), path.stat().st_mtime_ns, "image/webp")}" '
            f'style="{size}image-rendering:auto" alt="">')
    if caption:
        st.caption(caption)


def existing(path: Any) -> Path | None:
    """A file the gallery says exists, if it really does (deleted files, runs in progress)."""
    if not path:
        return None
    p = Path(path)
    return p if p.is_file() else None
