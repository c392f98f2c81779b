"""AppTest of the Gallery page: the paginated grid and its filters, the detail view (scrubbing,
download, favorite, title/tags, re-run, delete with confirmation) and Compare."""
from __future__ import annotations

import json
import time
from datetime import date

import pytest

from app_pages.gallery import clamp_page, filters_from_state, page_count
from app_pages.results import compare_table, parse_ids, scrub_frames
from engine.params import MAX_SIZE, Params
from engine.pngmeta import read_params_json
from gallery import RunFilter
from gallery.paths import input_sha256
from harness.paths import STYLE2
from support.app import app, assert_ok, play_worker, shown, small_params

GALLERY = "app_pages/gallery.py"


def done_runs(g, n: int, **changes) -> list[int]:
    ids = []
    for i in range(n):
        g.submit(small_params(seed=i, **changes), owner="maker001", title=f"result {i}")
        ids.append(play_worker(g, until="done"))
    return ids


def card_ids(at) -> list[int]:
    return [int(b.key.removeprefix("open-")) for b in at.button if b.key and b.key.startswith("open-")]


def test_filters_from_state():
    assert filters_from_state({}) == RunFilter(status="done")
    f = filters_from_state({"g_status": "any", "g_favorites": True, "g_search": " starry ", "g_size": (64, MAX_SIZE),
                            "g_dates": (date(2026, 1, 1), date(2026, 1, 31)), "g_style": "abc"})
    assert f.favorite is True and f.search == "starry" and f.min_size == 64 and f.max_size is None
    assert f.status is None and f.style == "abc"
    assert f.since < f.until and (f.until - f.since).days == 31  # the last day included
    assert page_count(0, 24) == 1 and page_count(49, 24) == 3
    assert clamp_page(9, 3) == 3 and clamp_page(0, 3) == 1


def test_grid_is_newest_first_and_paginated(studio):
    ids = done_runs(studio, 26)
    studio.submit(small_params(), owner="x0000001")  # queued: not a result, not shown by default
    at = app(GALLERY)
    assert_ok(at)
    assert card_ids(at) == ids[::-1][:20]
    assert any(c.value.startswith("26 results") for c in at.caption)
    assert at.button(key="prev_page").disabled
    at.button(key="next_page").click().run()
    assert card_ids(at) == ids[::-1][20:]
    assert "Page 2 of 2" in [c.value for c in at.caption]


def block_keys(node) -> list[str]:
    """User keys of the containers under `node` (a block's proto id ends with "-<key>")."""
    keys = []
    for child in getattr(node, "children", {}).values():
        proto_id = getattr(getattr(child, "proto", None), "id", "")
        if hasattr(child, "children") and isinstance(proto_id, str) and proto_id.startswith("$$ID-"):
            keys.append(proto_id.split("-", 2)[2])
        keys += block_keys(child)
    return keys


def test_cards_are_keyed_containers(studio):
    ids = done_runs(studio, 2)
    at = app(GALLERY)
    assert [k for k in block_keys(at._tree) if k.startswith("run-")] == [f"run-{i}" for i in ids[::-1]]


def test_filters_narrow_the_grid(studio):
    plain = done_runs(studio, 2)
    blended = done_runs(studio, 1, styles=(str(STYLE2),))[0]
    studio.set_favorite(plain[0], True)
    studio.set_title_tags(plain[1], "Evening walk", "walk, test")
    at = app(GALLERY)
    at.toggle(key="g_favorites").set_value(True).run()
    assert card_ids(at) == [plain[0]]
    at.toggle(key="g_favorites").set_value(False)
    at.text_input(key="g_search").set_value("walk").run()
    assert card_ids(at) == [plain[1]]
    at.text_input(key="g_search").set_value("")
    at.selectbox(key="g_style").set_value(studio.get(blended).style_sha256s[0]).run()
    assert card_ids(at) == [blended]
    at.selectbox(key="g_style").set_value(None)
    at.selectbox(key="g_sort").set_value("oldest").run()
    assert card_ids(at) == [*plain, blended]
    at.slider(key="g_size").set_value((128, 4096)).run()
    assert card_ids(at) == []
    assert at.info[0].value == "No results match."


def test_detail_view_shows_everything_and_edits(studio):
    rid = done_runs(studio, 1)[0]
    at = app(GALLERY)
    at.button(key=f"open-{rid}").click().run()
    assert_ok(at)
    assert at.query_params["run"] == str(rid)
    # slider over the saved previews, the result last
    slider = at.select_slider(key=f"scrub-{rid}")
    assert len(slider.options) == 3
    slider.set_value(slider.options[0]).run()
    assert at.image[0].captions == ["iteration 5"]
    facts = " ".join(shown(m.value) for m in at.markdown)
    assert "**Weights:** caffe (sha256 abababababab…)" in facts and "**Device:** cpu" in facts
    params = at.dataframe[0].value
    assert params.loc["size", "value"] == "64" and params.loc["style_weight", "value"] == f"{Params().style_weight:g}"
    # download (the browser test fetches the file itself): the PNG carries its parameters
    assert at.get("download_button")[0].label == "Download PNG"
    assert at.get("download_button")[1].label == "Download the time-lapse"
    assert json.loads(read_params_json(studio.export_png(rid)))["size"] == 64
    at.toggle(key=f"favorite-{rid}").set_value(True).run()
    assert studio.get(rid).favorite
    at.text_input(key=f"title-{rid}").set_value("Night walk")
    at.text_input(key=f"tags-{rid}").set_value("night, tübingen")
    at.button[[b.label for b in at.button].index("Save title and tags")].click().run()
    assert (studio.get(rid).title, studio.get(rid).tags) == ("Night walk", "night, tübingen")


def test_rerun_opens_create_prefilled(studio):
    rid = done_runs(studio, 1, style_weight=42.0)[0]
    at = app(GALLERY, run=str(rid))
    at.button(key="rerun").click().run()
    assert_ok(at)
    assert [t.value for t in at.title] == ["Create"]
    assert at.number_input(key="p_style_weight").value == 42.0
    assert at.number_input(key="p_size").value == 64


def test_delete_asks_for_confirmation(studio):
    rid = done_runs(studio, 1)[0]
    run_dir = studio.run_dir(rid)
    at = app(GALLERY, run=str(rid))
    at.button(key="delete").click().run()
    assert studio.count_runs() == 1  # nothing yet: a dialog asks
    assert at.button(key="confirm_delete").label == "Delete"
    assert any("cannot be undone" in m.value for m in at.markdown)
    at.button(key="confirm_delete").click().run()
    assert_ok(at)
    assert studio.count_runs() == 0 and not run_dir.exists()
    assert "run" not in at.query_params


def test_compare_highlights_differing_parameters(studio):
    a = done_runs(studio, 1, style_weight=10.0)[0]
    b = done_runs(studio, 1, style_weight=1000.0, styles=(str(STYLE2),))[0]
    table, differing = compare_table([studio.get(a), studio.get(b)])
    assert differing == ["style_weight", "styles"]
    assert table.loc["style_weight"].tolist() == ["10", "1000"]
    at = app(GALLERY)
    at.checkbox(key=f"sel-{a}").check().run()
    at.checkbox(key=f"sel-{b}").check().run()
    at.button(key="compare").click().run()
    assert_ok(at)
    assert at.query_params["compare"] == f"{a},{b}"
    assert "Highlighted: style_weight, styles" in [c.value for c in at.caption]
    assert len(at.image) == 3  # the two side by side, and the one wiped from them


@pytest.mark.parametrize("text,ids", [("3,7,3", [3, 7]), ("1,2,3,4,5", [1, 2, 3, 4]), ("x,2", [2]), (None, [])])
def test_parse_compare_ids(text, ids):
    assert parse_ids(text) == ids


def test_scrub_frames_orders_previews_and_ends_with_the_result(tmp_path):
    paths = [tmp_path / n for n in ("p10.jpg", "p5.jpg", "r.png")]
    for p in paths:
        p.write_bytes(b"x")
    frames = scrub_frames([(10, paths[0]), (5, paths[1]), (15, tmp_path / "gone.jpg")], paths[2])
    assert [label for label, _ in frames] == ["iteration 5", "iteration 10", "result"]


@pytest.mark.slow
def test_grid_stays_quick_with_thousands_of_runs(studio):
    base = studio.get(studio.submit(small_params())).params  # images now stored in the gallery
    for seed in range(1, 2000):
        studio.submit(base.with_changes(seed=seed), title=f"run {seed}")
    at = app(GALLERY)
    at.selectbox(key="g_status").set_value("any")
    started = time.monotonic()
    at.run()
    first_page = time.monotonic() - started
    assert any(c.value.startswith("2000 results") for c in at.caption)
    assert card_ids(at) == list(range(2000, 1980, -1))
    at.session_state["g_page"] = 100
    started = time.monotonic()
    at.run()
    last_page = time.monotonic() - started
    assert card_ids(at) == list(range(20, 0, -1)) and "Page 100 of 100" in [c.value for c in at.caption]
    print(f"2000 runs: first page {first_page:.2f} s, last page {last_page:.2f} s")
    # One page of rows per run, whatever the total: generous bounds for a busy shared CPU.
    assert first_page < 10 and last_page < 10, (first_page, last_page)


def test_an_empty_gallery_says_how_to_fill_it(studio):
    """The grid compared its RunFilter with a dict, which is never equal: an empty gallery said
    "No results match." instead."""
    at = app("app_pages/gallery.py")
    assert any("No results yet" in i.value for i in at.info)


def test_selected_runs_are_compared_downloaded_and_deleted_together(studio):
    import io
    import zipfile

    from app_pages.gallery import selection_zip

    ids = [studio.submit(small_params(seed=i)) for i in range(3)]
    for _ in ids:
        play_worker(studio, until="done")
    at = app("app_pages/gallery.py")
    for rid in ids:
        at.checkbox(key=f"sel-{rid}").check().run()
    assert at.button(key="compare").disabled is False
    with zipfile.ZipFile(io.BytesIO(selection_zip(studio, ids + [999]))) as zf:  # a vanished id is left out
        assert {f"results/run-{rid}.png" for rid in ids} <= set(zf.namelist())
    at.button(key="delete_selected").click().run()
    at.button(key="confirm_bulk_delete").click().run()
    assert_ok(at)
    assert studio.count_runs() == 0 and at.session_state["selected"] == []


def test_the_detail_view_steps_to_the_neighbours_in_the_grids_order(studio):
    from app_pages.gallery import neighbours

    ids = [studio.submit(small_params(seed=i)) for i in range(3)]
    for _ in ids:
        play_worker(studio, until="done")
    assert neighbours(studio, ids[1], {}) == (ids[2], ids[0])  # newest first
    assert neighbours(studio, ids[1], {"g_sort": "oldest"}) == (ids[0], ids[2])
    at = app("app_pages/gallery.py", run=str(ids[0]))
    assert at.button(key="next_run").disabled and not at.button(key="previous_run").disabled
    at.button(key="previous_run").click().run()
    assert at.query_params["run"] == str(ids[1])


def test_a_result_becomes_the_content_in_one_click(studio):
    rid = studio.submit(small_params())
    play_worker(studio, until="done")
    at = app("app_pages/gallery.py", run=str(rid))
    at.button(key="use_as_content").click().run()
    assert_ok(at)
    assert [t.value for t in at.title] == ["Create"]
    (content,) = at.session_state["content_chosen"]
    assert content["name"] == f"tubingen-starry_night-run{rid}-64px.png"
    assert studio.get_input(input_sha256(content["path"])).width == 64  # the result, stored as an input


def test_the_wipe_shows_a_left_of_the_edge_and_b_right_of_it():
    from PIL import Image

    from app_pages.results import wipe

    a, b = Image.new("RGB", (100, 50), "red"), Image.new("RGB", (50, 25), "blue")
    out = wipe(a, b, 0.3)
    assert out.size == (100, 50)
    assert out.getpixel((10, 10)) == (255, 0, 0) and out.getpixel((90, 10)) == (0, 0, 255)
    assert wipe(a, b, 0).getpixel((0, 0)) == (0, 0, 255) and wipe(a, b, 1).getpixel((99, 0)) == (255, 0, 0)


def test_make_a_print_grows_a_larger_run_from_a_result_and_links_both(studio):
    from app_pages.results import print_size

    source = studio.submit(small_params(size=64, iterations=10))
    play_worker(studio, until="done")
    at = app(GALLERY, run=str(source))
    assert_ok(at)
    assert any("On this machine's CPU: the whole image at once" in c.value for c in at.caption)
    at.number_input(key="print_iterations").set_value(5)
    at.button(key="make_print").click().run()
    assert_ok(at)
    (made,) = studio.prints_of(source)
    assert made.grown_from == source and made.params.size == 128 and made.params.iterations == 5
    assert made.params.init == "image" and made.params.multiscale_from == 64
    assert made.params.scale_sizes() == [128]  # only the new, larger scale: the result is the 64 px one
    assert made.init_sha256 and studio.get_input(made.init_sha256).width == 64  # the result, stored as an input
    assert [t.value for t in at.title] == ["Create"] and at.query_params["run"] == str(made.id)
    at = app(GALLERY, run=str(source))
    assert at.button(key=f"print-{made.id}").label == f"Print #{made.id} · 128 px · queued"
    at.button(key=f"print-{made.id}").click().run()
    assert at.query_params["run"] == str(made.id)
    at.button(key="grown_from").click().run()
    assert at.query_params["run"] == str(source)
    run = studio.get(source)
    assert [print_size(run, c, a) for c, a in (("2×", 0), ("4×", 0), ("Size in px", 1000), ("Inches at 300 dpi", 12))] \
        == [128, 256, 1000, 3600]


def test_a_print_too_large_for_this_machine_is_said_before_it_is_queued(studio, monkeypatch):
    from app_pages.results import print_params, print_plan_line

    monkeypatch.setenv("STUDIO_MEMORY_BUDGET", "8GB")
    source = studio.submit(small_params(size=64, iterations=10))
    play_worker(studio, until="done")
    run = studio.get(source)
    assert print_plan_line(print_params(run, 2048, 10), None).startswith("On this machine's CPU: tiled, ")
    assert "Not enough memory" in print_plan_line(print_params(run, 16384, 10), None)
