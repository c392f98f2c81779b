"""AppTest of the Create page: images, presets, advanced settings, validation, queueing, the live
job panel (from what a worker writes to SQLite), cancel, reload, sweeps and re-run prefill."""
from __future__ import annotations

from engine.params import PRESETS, Params, validation_errors
from gallery import RunFilter
from harness.paths import CONTENT, STYLE, STYLE2, TEST_IMAGES
from support.app import app, assert_ok, play_worker, shown, small_params, uploader


def upload(at, kind: str, *paths) -> None:
    files = [(p.name, p.read_bytes(), "image/jpeg") for p in paths]
    uploader(at, kind).set_value(files if kind == "style" else files[0])
    at.run()


def fill_small(at) -> None:
    at.number_input(key="p_size").set_value(64)
    at.number_input(key="p_iterations").set_value(10)
    at.selectbox(key="p_device").set_value("cpu")
    at.run()


def test_defaults_come_from_the_balanced_preset(studio):
    at = app()
    assert_ok(at)
    assert [t.value for t in at.title] == ["Create"]
    assert at.segmented_control(key="preset").value == "balanced"
    assert at.number_input(key="p_size").value == PRESETS["balanced"]["size"]
    assert at.number_input(key="p_style_weight").value == Params().style_weight
    assert at.button(key="generate").disabled  # no images yet
    assert "owner" not in at.query_params  # a shared link carries no identity


def test_choosing_a_preset_fills_the_advanced_fields(studio):
    at = app()
    at.selectbox(key="p_device").set_value("cpu").run()
    at.segmented_control(key="preset").set_value("high quality").run()
    assert_ok(at)
    assert at.number_input(key="p_size").value == 1024
    assert at.number_input(key="p_iterations").value == PRESETS["high quality"]["iterations"]
    assert at.selectbox(key="p_device").value == "cpu"  # a preset keeps other choices
    assert any("Changed from the preset: Device" in c.value for c in at.caption)


def test_invalid_values_show_the_engines_message_beside_the_field(studio):
    at = app()
    at.number_input(key="p_size").set_value(5).run()
    at.multiselect(key="p_style_layers").set_value([]).run()
    expected = validation_errors(Params(size=5, style_layers=()), need_images=False)
    shown = " ".join(e.value for e in at.error)
    assert expected["size"].split(",")[0] in shown.replace("\\", "")
    assert expected["style_layers"] in shown
    assert at.button(key="generate").disabled


def test_upload_validates_and_shows_thumbnails(studio):
    at = app()
    uploader(at, "content").set_value(("notes.jpg", b"not an image", "image/jpeg"))
    at.run()
    assert_ok(at)
    assert any("notes.jpg" in shown(e.value) for e in at.error)
    assert not at.session_state["content_chosen"]
    upload(at, "content", CONTENT)
    upload(at, "style", STYLE, STYLE2)
    assert [i["name"] for i in at.session_state["content_chosen"]] == [CONTENT.name]
    assert [i["name"] for i in at.session_state["style_chosen"]] == [STYLE.name, STYLE2.name]
    assert len(at.image) >= 3
    # two styles: a blend weight each
    assert at.number_input(key="p_blend_1").value == 1.0
    # stored in the gallery, offered again as earlier inputs
    assert {i.name for i in studio.list_inputs(kind="style")} == {STYLE.name, STYLE2.name}


def test_generate_queues_the_job_and_shows_its_position(studio):
    other = studio.submit(small_params(), owner="someone")  # already waiting
    at = app()
    upload(at, "content", CONTENT)
    upload(at, "style", STYLE)
    fill_small(at)
    at.button(key="generate").click().run()
    assert_ok(at)
    mine = studio.list_runs(RunFilter(owner=at.session_state["owner"]))
    assert len(mine) == 1 and mine[0].status == "queued"
    assert (mine[0].params.size, mine[0].params.iterations, mine[0].params.device) == (64, 10, "cpu")
    assert at.query_params["run"] == str(mine[0].id)
    assert any("position 2" in p.proto.text for p in at.get("progress"))
    assert other != mine[0].id


def test_running_job_shows_progress_losses_preview_and_can_be_cancelled(studio):
    rid = studio.submit(small_params(preview_every=2), owner="tab1tab1")
    play_worker(studio, until="running", iteration=4)
    at = app(owner="tab1tab1")
    assert_ok(at)
    assert at.query_params["run"] == str(rid)
    progress = at.get("progress")[0]
    assert "Iteration 4 of 10" in progress.proto.text
    text = " ".join([m.value for m in at.markdown] + [c.value for c in at.caption])
    # each part as it counts in the total (content 4 × weight 5, style 15 × 100, tv 1 × 0.001)
    assert "| total | 20 |\n| content | 20 |\n| style | 1500 |\n| tv | 0.001 |" in text
    assert "Elapsed" in text and "ETA —" not in text
    assert at.image, "the latest preview is shown"
    at.button(key="cancel").click().run()
    assert studio.get(rid).cancel_requested
    assert at.button(key="cancel").label == "Cancelling…"


def test_a_reload_or_second_tab_finds_the_job_in_the_database(studio):
    at = app()
    owner = at.session_state["owner"]
    rid = studio.submit(small_params(), owner=owner)
    # A fresh session (reload, new tab) with only the owner in the URL: no session state at all.
    again = app(owner=owner)
    assert again.query_params["run"] == str(rid)
    assert any(s.value.startswith(f"Run #{rid}") for s in again.subheader)


def test_finished_and_failed_jobs(studio):
    rid = studio.submit(small_params(), owner="owner001")
    play_worker(studio, until="done")
    at = app(owner="owner001")
    assert any(s.value == f"Run #{rid} · Done" for s in at.subheader)
    link = next(link for link in at.get("page_link") if link.value == "Open in gallery")
    assert link.proto.page.endswith("gallery") and "owner" not in link.proto.query_string  # no identity in links
    assert link.proto.query_string == f"run={rid}"
    download = next(d for d in at.get("download_button") if d.proto.label == "Download PNG")
    assert download.proto.type == "primary"  # the result's file, one click away

    bad = studio.submit(small_params(), owner="owner001")
    play_worker(studio, until="failed")
    at = app(owner="owner001", run=str(bad))
    assert any("out of memory" in e.value for e in at.error)
    at.button(key="requeue").click().run()
    new = int(at.query_params["run"])
    assert new != bad and studio.get(new).status == "queued"


def test_sweep_queues_one_batch_and_shows_a_grid(studio):
    at = app()
    upload(at, "content", CONTENT)
    upload(at, "style", STYLE)
    fill_small(at)
    at.selectbox(key="sweep_param_1").set_value("style_weight")
    at.text_input(key="sweep_values_1").set_value("10, 1000")
    at.selectbox(key="sweep_param_2").set_value("iterations")
    at.text_input(key="sweep_values_2").set_value("5 10")
    at.run()
    assert at.button(key="generate").label == "Generate 4 runs"
    at.button(key="generate").click().run()
    assert_ok(at)
    batch = at.query_params["batch"]
    runs = studio.list_runs(RunFilter(batch=batch))
    assert len(runs) == 4 and {r.params.style_weight for r in runs} == {10.0, 1000.0}
    for _ in runs:
        play_worker(studio, until="done")
    at.run()
    assert any(s.value == "Sweep · 4 of 4 done" for s in at.subheader)
    assert len(at.image) >= 4
    captions = " ".join(c.value for c in at.caption)
    assert "style_weight = 1000" in captions and "iterations = 10" in captions


def test_sweep_values_are_checked(studio):
    at = app()
    at.selectbox(key="sweep_param_1").set_value("size")
    at.text_input(key="sweep_values_1").set_value("64, 2")
    at.run()
    assert any(validation_errors(Params(size=2), need_images=False)["size"][:20] in e.value.replace("\\", "")
               for e in at.error)
    at.text_input(key="sweep_values_1").set_value("64, big").run()
    assert any("'big' is not a number" in e.value.replace("\\", "") for e in at.error)


def test_rerun_link_prefills_the_form(studio):
    p = small_params(style_weight=123.0, styles=(str(STYLE), str(STYLE2)), style_blend=(2.0, 1.0),
                     original_colors=True)
    rid = studio.submit(p)
    at = app(**{"from": str(rid)})
    assert_ok(at)
    assert "from" not in at.query_params
    assert at.number_input(key="p_style_weight").value == 123.0
    assert at.number_input(key="p_size").value == 64
    assert at.toggle(key="p_original_colors").value is True
    assert at.number_input(key="p_blend_0").value == 2.0
    assert [i["name"] for i in at.session_state["style_chosen"]] == [STYLE.name, STYLE2.name]
    assert not at.button(key="generate").disabled


def test_examples_folder_offers_images(studio, monkeypatch):
    monkeypatch.setenv("STUDIO_EXAMPLES", str(TEST_IMAGES))
    at = app()
    options = at.selectbox(key="content_pick").options
    assert "example: tubingen.jpg" in options and "example: starry_night.jpg" not in options
    example = str(TEST_IMAGES / "content" / "tubingen.jpg")
    at.selectbox(key="content_pick").set_value(example).run()
    assert at.session_state["content_chosen"][0]["path"] == example


def test_an_image_gone_before_generate_is_reported_not_raised(studio, monkeypatch, tmp_path):
    examples = tmp_path / "examples"
    examples.mkdir()
    photo = examples / "photo.jpg"
    photo.write_bytes(CONTENT.read_bytes())
    monkeypatch.setenv("STUDIO_EXAMPLES", str(examples))
    at = app()
    at.selectbox(key="content_pick").set_value(str(photo)).run()
    upload(at, "style", STYLE)
    photo.unlink()
    at.button(key="generate").click().run()
    assert_ok(at)
    assert any("photo.jpg" in shown(e.value) for e in at.error)
    assert studio.count_runs() == 0


def test_variations_queue_runs_of_consecutive_seeds_from_noise_only(studio):
    at = app()
    at.selectbox(key="p_init").set_value("noise").run()
    at.number_input(key="variations").set_value(3).run()
    assert_ok(at)
    upload(at, "content", CONTENT)
    upload(at, "style", STYLE)
    at.number_input(key="p_seed").set_value(7).run()
    assert at.button(key="generate").label == "Generate 3 runs"
    at.button(key="generate").click().run()
    assert sorted(r.params.seed for r in studio.list_runs()) == [7, 8, 9]
    at.selectbox(key="p_init").set_value("content").run()
    assert at.number_input(key="variations").disabled  # the seed changes nothing from the photo


def test_the_dice_picks_a_random_seed(studio):
    at = app()
    at.button(key="random_seed").click().run()
    assert at.number_input(key="p_seed").value != 0
