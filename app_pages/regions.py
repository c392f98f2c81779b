"""Regional styles on the Create page: with two or more styles, a person draws where each style
goes on the photo (one colour per style, a brush size, an eraser, clear) or uploads a mask per
style, and sees the regions over the photo before generating.

The drawing is a streamlit-drawable-canvas; its Fabric.js JSON and rendered PNG live in session
state, so the drawing survives reruns and page switches (a remounted canvas starts from the saved
JSON). Masks come from the PNG: each painted pixel goes to the nearest style colour (the eraser's
white paints "no style"), its opacity the mask's grey level; a style left unpainted takes what the
others leave. They are stored in the gallery only when the run is queued.
"""
from __future__ import annotations

import html
import io
from collections.abc import MutableMapping
from typing import Any

import streamlit as st
from PIL import Image, ImageChops

from app_pages import common
from engine.clips import first_frame
from engine.images import ImageError
from engine.masks import EVERYWHERE, fit, load_mask
from gallery import Gallery, GalleryError

# One colour per style (engine.params.MAX_STYLES of them), far apart for the nearest-colour match.
PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45")
ERASER = "#ffffff"
CANVAS_WIDTH = 512
EVERYWHERE_MODE, DRAW, UPLOAD = "Every style everywhere", "Draw regions", "Upload masks"
MODE_KEY, JSON_KEY, PNG_KEY, UPLOADS_KEY = "regions_mode", "regions_json", "regions_png", "regions_uploads"
# The mode outside widget state, which Streamlit drops on a trip to another page.
SAVED_MODE_KEY = "regions_saved_mode"
CANVAS_VERSION = "regions_canvas_version"


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def masks_from_drawing(png: bytes, styles: int, size: tuple[int, int]) -> list[Image.Image]:
    """One grey-level mask per style at `size` from the canvas's rendered strokes; [] when
    nothing is painted. A style with no paint of its own gets what the others leave."""
    try:  # the canvas's PNG comes from the browser: anything else is ignored, not decoded
        opened = Image.open(io.BytesIO(png), formats=["PNG"])
        if opened.width * opened.height > 16 * CANVAS_WIDTH ** 2:  # a tall photo's canvas on a 2x screen fits
            return []
        drawing = opened.convert("RGBA").resize(size, Image.Resampling.BILINEAR)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return []
    colours = [_rgb(c) for c in PALETTE[:styles]] + [_rgb(ERASER)]
    palette = Image.new("P", (1, 1))
    palette.putpalette([v for c in colours for v in c] + [0, 0, 0] * (256 - len(colours)))
    nearest = drawing.convert("RGB").quantize(palette=palette, dither=Image.Dither.NONE)
    alpha = drawing.getchannel("A")
    painted = [ImageChops.multiply(nearest.point(lambda v, i=i: 255 if v == i else 0, "L"), alpha)
               for i in range(styles)]
    if not any(m.getbbox() for m in painted):
        return []
    covered = painted[0]
    for m in painted[1:]:
        covered = ImageChops.lighter(covered, m)
    rest = ImageChops.invert(covered)
    return [m if m.getbbox() else rest for m in painted]


def overlay(photo: Image.Image, masks: list[Image.Image | None]) -> Image.Image:
    """The photo with each style's region tinted in its colour (masks at the photo's size)."""
    out = photo.convert("RGB")
    for colour, mask in zip(PALETTE, masks):
        if mask is not None:
            tint = Image.new("RGB", out.size, colour)
            out = Image.composite(tint, out, fit(mask, out.size).point(lambda v: v * 55 // 100))
    return out


def store(gallery: Gallery, masks: list[Image.Image | None], style_names: list[str]) -> tuple[str, ...]:
    """The masks as gallery inputs (stored once by hash); the entries of Params.style_masks."""
    entries = []
    for mask, name in zip(masks, style_names):
        if mask is None:
            entries.append(EVERYWHERE)
            continue
        data = io.BytesIO()
        mask.save(data, "PNG")
        entries.append(str(gallery.add_input(data.getvalue(), f"region of {name}.png").path))
    return tuple(entries)


def prefill(session: MutableMapping[Any, Any], styles: tuple[str, ...], style_masks: tuple[str, ...]) -> None:
    """ "Re-run with these settings": a run's masks come back as uploaded masks."""
    session[UPLOADS_KEY] = {s: m for s, m in zip(styles, style_masks) if m != EVERYWHERE}
    session[MODE_KEY] = session[SAVED_MODE_KEY] = UPLOAD if session[UPLOADS_KEY] else EVERYWHERE_MODE


def current_masks(session: MutableMapping[Any, Any], styles: list[dict[str, str]],
                  size: tuple[int, int]) -> list[Image.Image | None]:
    """The masks the page shows for `styles` at the photo's `size`; [] for no masks."""
    if len(styles) < 2:
        return []
    mode = session.get(MODE_KEY, EVERYWHERE_MODE)
    if mode == DRAW and session.get(PNG_KEY):
        return list(masks_from_drawing(session[PNG_KEY], len(styles), size))
    if mode == UPLOAD:
        uploads = session.get(UPLOADS_KEY, {})
        found = [uploads.get(s["path"]) for s in styles]
        if any(found):
            return [None if path is None else fit(load_mask(path), size) for path in found]
    return []


def swatches(styles: list[dict[str, str]]) -> str:
    """Each brush's colour beside its style's name: the legend of the drawing and the preview."""
    items = "".join(
        f'<span style="margin-right:1em;white-space:nowrap"><span style="display:inline-block;width:.9em;'
        f'height:.9em;border-radius:.2em;vertical-align:-.1em;background:{colour}"></span> '
        f'{html.escape(_style_label(i, s["name"]))}</span>'
        for i, (colour, s) in enumerate(zip(PALETTE, styles)))
    return f'<div style="font-size:.85rem;color:#555">{items}</div>'


def _style_label(i: int, name: str) -> str:
    return f"Style {i + 1}: {name}"


def _clear() -> None:
    st.session_state[JSON_KEY] = None
    st.session_state[PNG_KEY] = None
    st.session_state[CANVAS_VERSION] = st.session_state.get(CANVAS_VERSION, 0) + 1


def _draw(photo: Image.Image, styles: list[dict[str, str]]) -> None:
    from streamlit_drawable_canvas import st_canvas  # only this page loads the component

    brushes = [_style_label(i, common.escape_md(s["name"])) for i, s in enumerate(styles)] + ["Eraser"]
    left, right = st.columns([3, 2])
    brush = left.radio("Brush", brushes, key="regions_brush", horizontal=True,
                       help="Paint where each style goes; colours as in the preview below.")
    left.html(swatches(styles))
    width = right.slider("Brush size", 2, 80, 30, key="regions_brush_size")
    colour = PALETTE[brushes.index(brush)] if brush in brushes[:-1] else ERASER
    height = round(CANVAS_WIDTH * photo.height / photo.width)
    key = f"regions_canvas_{st.session_state.get(CANVAS_VERSION, 0)}"
    # A canvas mounted afresh (first visit, back from another page) starts from the saved drawing.
    initial = st.session_state.get(JSON_KEY) if key not in st.session_state else None
    with st.container(key="regions_canvas"):
        result = st_canvas(stroke_color=colour, stroke_width=width, background_image=photo.resize(
            (CANVAS_WIDTH, height)), drawing_mode="freedraw", initial_drawing=initial, height=height,
            width=CANVAS_WIDTH, return_image_data=True, key=key)
    if result.json_data is not None and result.image_bytes:
        st.session_state[JSON_KEY] = result.json_data
        st.session_state[PNG_KEY] = result.image_bytes
    st.button("Clear the drawing", key="regions_clear", on_click=_clear, icon=":material/ink_eraser:")


def _upload(gallery: Gallery, styles: list[dict[str, str]]) -> None:
    uploads = st.session_state.setdefault(UPLOADS_KEY, {})
    for i, s in enumerate(styles):
        f = st.file_uploader(f"Mask for {_style_label(i, common.escape_md(s['name']))} (white = here; none = everywhere)",
                             type=common.IMAGE_TYPES, key=f"regions_upload_{i}")
        if f is None:
            continue
        try:
            load_mask(f.getvalue(), f"The mask {f.name}")
            uploads[s["path"]] = str(gallery.add_input(f.getvalue(), f.name).path)
        except (ImageError, GalleryError, OSError) as exc:
            st.error(common.escape_md(str(exc)), icon=":material/error:")


def render(gallery: Gallery, content: list[dict[str, str]], styles: list[dict[str, str]]) -> list[Image.Image | None]:
    """The Regions expander (two or more styles and a photo); returns the masks it shows."""
    if len(styles) < 2 or not content:
        return []
    try:
        photo = first_frame(content[0]["path"])  # a clip's regions hold for all its frames
    except ImageError:
        return []
    photo.thumbnail((CANVAS_WIDTH, CANVAS_WIDTH))
    if MODE_KEY not in st.session_state:
        st.session_state[MODE_KEY] = st.session_state.get(SAVED_MODE_KEY, EVERYWHERE_MODE)
    with st.expander("Regions: where each style goes", key="regions"):
        mode = st.session_state[SAVED_MODE_KEY] = st.radio(
            "Regions", [EVERYWHERE_MODE, DRAW, UPLOAD], key=MODE_KEY, horizontal=True,
            label_visibility="collapsed")
        if mode == DRAW:
            _draw(photo, styles)
        elif mode == UPLOAD:
            _upload(gallery, styles)
        try:
            masks = current_masks(st.session_state, styles, photo.size)
        except ImageError as exc:
            st.error(common.escape_md(str(exc)), icon=":material/error:")
            return []
        if masks:
            st.image(overlay(photo, masks), caption="The regions over the photo", width=320)
        elif mode != EVERYWHERE_MODE:
            st.caption("Nothing painted yet: every style applies everywhere, blended.")
    return masks
