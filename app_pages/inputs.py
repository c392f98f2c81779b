"""Choosing the content image and the style images on the Create page.

The choice lives in session state as plain {path, name} items. Uploads, earlier inputs and
examples are only ways to add to it: an upload is stored in the gallery at once (validated
there by engine.images) and the uploader is emptied, so the choice survives page switches, which
a file uploader's own state does not.
"""
from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import streamlit as st

from app_pages import common
from engine.clips import LIMITS, clip_format
from engine.images import ImageError
from engine.params import MAX_STYLES
from gallery import Gallery, GalleryError, InputImage
from gallery.names import display_name
from gallery.paths import input_sha256


def chosen(session: MutableMapping[Any, Any], kind: str) -> list[dict[str, str]]:
    return session.setdefault(f"{kind}_chosen", [])


def choose(session: MutableMapping[Any, Any], kind: str, path: str, name: str) -> None:
    """Adds an image; content holds one (a new one replaces it), styles up to MAX_STYLES."""
    items = chosen(session, kind)
    if kind == "content":
        items[:] = [{"path": path, "name": name}]
    elif all(i["path"] != path for i in items) and len(items) < MAX_STYLES:
        items.append({"path": path, "name": name})


def unchoose(session: MutableMapping[Any, Any], kind: str, path: str) -> None:
    items = chosen(session, kind)
    items[:] = [i for i in items if i["path"] != path]


CLIP_HELP = ("A clip is styled frame by frame: the first frame with the full run, each later one starting "
             "from the previous result moved along with the clip (Advanced: frame iterations, temporal weight). "
             f"Clips may have {LIMITS}.")


def stored(gallery: Gallery, path: str) -> InputImage | None:
    """The gallery's record of `path` when it names one of its stored inputs; None for a file
    outside the gallery (an example)."""
    sha = input_sha256(path)
    return gallery.get_input_or_none(sha) if sha else None


def stored_clip(gallery: Gallery, path: str) -> InputImage | None:
    """The gallery's record of `path` when it is a stored clip; None for a still image or a
    file outside the gallery (an example)."""
    found = stored(gallery, path)
    return found if found is not None and found.is_clip else None


WAITING = "Another upload's frames are being checked; yours is next."


def tiny_size(found: InputImage | None) -> tuple[int, int] | None:
    """(width, height) of a stored input whose shorter side is under SMALL_SIDE px; else None."""
    if found is None or not found.width or min(found.width, found.height) >= SMALL_SIDE:
        return None
    return found.width, found.height


def longest_side(gallery: Gallery, path: str) -> int | None:
    """The longest side of a chosen image (a clip's frames), from the gallery's record or the
    file's header; None when it cannot be told."""
    found = stored(gallery, path)
    if found is not None and found.width:
        return max(found.width, found.height)
    try:
        from PIL import Image

        with Image.open(path) as img:  # an example: the header only
            return max(img.size)
    except (OSError, ValueError):
        return None


def store(gallery: Gallery, data: bytes, name: str, kind: str) -> tuple[str, str]:
    """Stores bytes in the gallery's inputs; (path, name). Raises engine.images.ImageError
    for a file that is not a usable image. A clip waits while others are checked
    (engine.clips.decode_slot), and the person is told."""
    if kind == "style" and (fmt := clip_format(data)):
        raise ImageError(f"A style is a still image, and this is an animated {fmt}: save the frame you want "
                         "as a PNG or JPEG and upload that.")
    def told() -> None:
        st.toast(WAITING, icon=":material/hourglass_top:")

    image = gallery.add_input(data, name, kind=kind, waiting=told)
    return str(image.path), image.name


EXAMPLE = "example: "
# Said under the uploader: its own hint is cut short in a narrow column (the video types hidden).
UPLOAD_HINT = {
    "content": "A photo, or a clip: GIF, WebP, MP4, WebM or MOV.",
    "style": "Paintings: still images, one or more.",
}
# An image's name under its thumbnail on one line, cut with an ellipsis (it broke mid-word).
NAME_CSS = """<style>
[class*="_thumbnails"] [data-testid="stImageCaption"] { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
</style>"""
# Below this (the shorter side), a result is mostly made up: said beside the thumbnail.
SMALL_SIDE = 64


def options(gallery: Gallery, kind: str) -> dict[str, str]:
    """path -> label: earlier inputs (most recently used first), then the examples folder's."""
    found = {str(image.path): image.name for image in gallery.list_inputs(kind=kind, limit=100)}
    for path in common.list_examples(common.examples_dir(), kind):
        found.setdefault(str(path), EXAMPLE + path.name)
    return found


def _uploader_key(kind: str) -> str:
    # A new key empties the uploader once its files are stored.
    return f"{kind}_file_{st.session_state.get(f'{kind}_upload_version', 0)}"


def take_uploads(kind: str) -> None:
    """Stores what the uploader holds and empties it. Called as the page is drawn, not from the
    uploader's on_change: when a second upload (the style's) reaches the server while the
    first one's rerun is still starting, Streamlit folds the two reruns into one and the first
    uploader's callback never runs; its file would sit in the uploader, never taken. Here
    whatever an uploader holds is taken on the next run, whichever run that is."""
    held = st.session_state.get(_uploader_key(kind))
    if _take(common.get_gallery(), kind, held if isinstance(held, list) else [held]):
        st.session_state[f"{kind}_upload_version"] = st.session_state.get(f"{kind}_upload_version", 0) + 1


def paste(gallery: Gallery, kind: str, many: bool) -> None:
    """A box to paste an image from the clipboard into (Ctrl+V, then Enter), as image tools have
    it: Streamlit's chat input takes pasted files, its file uploader does not."""
    pasted = st.chat_input("Paste (Ctrl+V), then Enter", key=f"{kind}_paste",
                           accept_file="multiple" if many else True, file_type=common.IMAGE_TYPES,
                           max_upload_size=50)
    _take(gallery, kind, getattr(pasted, "files", None) or [])


def _take(gallery: Gallery, kind: str, held: list[Any]) -> bool:
    """Stores the files a widget holds and chooses them; each one's refusal in one sentence under
    the uploader. False when it held none. (Read before its widget is drawn, a value may still
    list files Streamlit has let go of: those are not files.)"""
    files = [f for f in held if hasattr(f, "getvalue")]
    if not files:
        return False
    errors = []
    for f in files:
        try:
            path, name = store(gallery, f.getvalue(), f.name or "pasted.png", kind)
        except (ImageError, GalleryError, OSError) as exc:  # one sentence for the person; OSError: a full disk
            errors.append(f"{display_name(f.name or 'pasted')}: {exc}")  # the name as stored: no bidi tricks
            continue
        choose(st.session_state, kind, path, name)
    st.session_state[f"{kind}_error"] = "; ".join(errors)
    return True


def _on_pick(kind: str, labels: dict[str, str]) -> None:
    """A choice from the picker. `labels` is what the page offered (passed from the server, not
    the browser): the browser can send any string as the picker's value, and a path that was not
    offered is not taken."""
    path = st.session_state.get(f"{kind}_pick")
    if isinstance(path, str) and path in labels:
        choose(st.session_state, kind, path, labels[path].removeprefix(EXAMPLE))
        st.session_state[f"{kind}_error"] = ""
    st.session_state[f"{kind}_pick"] = None


def offered(gallery: Gallery, path: str) -> bool:
    """Whether the page may use `path` as an input: a stored input of the gallery, or an image of
    the examples folder. Server paths beyond those are for the command line and the admin."""
    found = stored(gallery, path)
    if found is not None and str(found.path) == path:
        return True
    folder = common.examples_dir()
    return folder is not None and Path(path).resolve().is_relative_to(folder)


def _on_remove(kind: str, path: str) -> None:
    unchoose(st.session_state, kind, path)


def render(kind: str, title: str) -> list[dict[str, str]]:
    """Uploader, picker, thumbnails of the choice, and any error; returns the choice."""
    gallery = common.get_gallery()
    take_uploads(kind)
    st.markdown(f"**{title}**")
    many = kind == "style"
    # The stable container key is the automation hook; the uploader inside is re-keyed.
    with st.container(key=f"{kind}_upload"):
        st.file_uploader(
            f"Upload {'style images' if many else 'a content image or clip'}",
            type=common.IMAGE_TYPES + ([] if many else common.VIDEO_TYPES),
            accept_multiple_files=many, key=_uploader_key(kind),
            label_visibility="collapsed",
        )
    st.caption(UPLOAD_HINT[kind])
    labels = options(gallery, kind)
    pick, clipboard = st.columns([3, 1], vertical_alignment="center", gap="small")
    if labels:
        pick.selectbox(
            "Or pick an earlier upload or an example", list(labels), index=None, key=f"{kind}_pick",
            format_func=lambda p: labels.get(p, p), placeholder="Earlier or example…",
            on_change=_on_pick, args=(kind, labels), label_visibility="collapsed",
        )
    with clipboard.popover("Paste", icon=":material/content_paste:", help="An image from the clipboard"):
        paste(gallery, kind, many)
    if st.session_state.get(f"{kind}_error"):
        st.error(common.escape_md(st.session_state[f"{kind}_error"]), icon=":material/error:")
    items = chosen(st.session_state, kind)
    if items:
        st.html(NAME_CSS)
        per_row = 2 if many else 1  # the one content image as large as its column
        cols = st.container(key=f"{kind}_thumbnails").columns(per_row)
        for i, item in enumerate(items):
            with cols[i % per_row]:
                preview = common.input_thumbnail(item["path"])
                if preview:
                    st.image(preview, caption=common.escape_md(item["name"]), width="stretch")
                else:
                    st.caption(f"{common.escape_md(item['name'])} (missing)")
                found = stored(gallery, item["path"])
                if found is not None and found.is_clip:
                    st.caption(common.clip_caption(found.frames, found.duration_ms), help=CLIP_HELP)
                small = tiny_size(found)
                if small:
                    st.warning(f"Only {small[0]}×{small[1]} px: there is almost nothing here to go on, and "
                               "the result will show it.", icon=":material/photo_size_select_small:")
                st.button("Remove", key=f"remove_{kind}_{i}", on_click=_on_remove,
                          args=(kind, item["path"]), type="tertiary", icon=":material/close:")
    return items
