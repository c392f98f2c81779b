"""Regional styles on the Create page (AppTest and the canvas-to-mask helpers); the drawing
itself is exercised in a real browser by tests/test_e2e_browser.py."""
from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageDraw

from app_pages import regions
from harness.paths import CONTENT, STYLE, STYLE2
from support.app import app, assert_ok, play_worker, shown, small_params


def drawing(*strokes: tuple[str, tuple[int, int, int, int]]) -> bytes:
    """A canvas rendering: transparent, with opaque rectangles of the given colours."""
    img = Image.new("RGBA", (40, 30), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    for colour, box in strokes:
        draw.rectangle(box, fill=colour)
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def test_each_colour_becomes_its_styles_mask_and_the_eraser_unpaints():
    png = drawing((regions.PALETTE[0], (0, 0, 19, 29)), (regions.PALETTE[1], (20, 0, 39, 29)),
                  (regions.ERASER, (0, 0, 9, 29)))
    first, second = regions.masks_from_drawing(png, 2, (40, 30))
    assert first.getpixel((15, 10)) == 255 and first.getpixel((25, 10)) == 0
    assert first.getpixel((5, 10)) == 0  # erased
    assert second.getpixel((25, 10)) == 255 and second.getpixel((15, 10)) == 0


def test_an_unpainted_style_takes_the_rest_and_no_paint_is_no_masks():
    first, second = regions.masks_from_drawing(drawing((regions.PALETTE[0], (0, 0, 19, 29))), 2, (40, 30))
    assert first.getpixel((5, 5)) == 255 and second.getpixel((5, 5)) == 0
    assert second.getpixel((30, 5)) == 255
    assert regions.masks_from_drawing(drawing(), 2, (40, 30)) == []


def test_the_overlay_tints_each_region():
    photo = Image.new("RGB", (40, 30), "white")
    left = Image.new("L", (40, 30))
    left.paste(255, (0, 0, 20, 30))
    shown = regions.overlay(photo, [left, None])
    assert shown.getpixel((30, 5)) == (255, 255, 255) and shown.getpixel((5, 5)) != (255, 255, 255)


def test_rerun_brings_the_masks_back_and_generate_queues_them(studio, tmp_path: Path):
    mask = tmp_path / "left.png"
    left = Image.new("L", (64, 48))
    left.paste(255, (0, 0, 32, 48))
    left.save(mask)
    rid = studio.submit(small_params(styles=(str(STYLE), str(STYLE2)), style_masks=(str(mask), "all")))
    stored = studio.get(rid).params.style_masks
    at = app(**{"from": str(rid)})
    assert_ok(at)
    assert at.radio(key=regions.MODE_KEY).value == regions.UPLOAD
    assert ["The regions over the photo"] in [i.captions for i in at.image]
    at.button(key="generate").click().run()
    assert_ok(at)
    again = studio.get(int(at.query_params["run"]))
    assert again.id != rid and again.mask_sha256s[1] is None
    assert Path(again.params.style_masks[0]).read_bytes() != b""
    # The queued mask is the same region (stored again as drawn at the photo's preview size).
    region = Image.open(again.params.style_masks[0])
    assert region.getpixel((2, 2)) == 255 and region.getpixel((region.width - 3, 2)) == 0
    assert stored[1] == "all"


def test_with_one_style_there_are_no_regions(studio):
    at = app()
    at.session_state["content_chosen"] = [{"path": str(CONTENT), "name": CONTENT.name}]
    at.session_state["style_chosen"] = [{"path": str(STYLE), "name": STYLE.name}]
    at.run()
    assert_ok(at)
    assert not [r for r in at.radio if r.key == regions.MODE_KEY]


def test_the_detail_view_shows_the_masks_beside_the_inputs(studio, tmp_path: Path):
    mask = tmp_path / "left.png"
    left = Image.new("L", (64, 48))
    left.paste(255, (0, 0, 32, 48))
    left.save(mask)
    studio.submit(small_params(styles=(str(STYLE), str(STYLE2)), style_masks=(str(mask), "all")))
    rid = play_worker(studio)
    at = app("app_pages/gallery.py", run=str(rid))
    assert_ok(at)
    captions = [shown(c) for i in at.image for c in i.captions]
    assert f"Region: {STYLE.name}" in captions and f"Region: {STYLE2.name}" not in captions
    params = at.dataframe[0].value
    assert params.loc["style_masks", "value"] == f"{STYLE.name}: region, {STYLE2.name}: everywhere"
