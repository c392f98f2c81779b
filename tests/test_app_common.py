"""The UI's plain functions: owners, durations, examples, the form's state, sweeps, shown images."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

from app_pages import common, owner, params_form, sweep
from engine.params import PRESETS, Params, preset, validation_errors
from harness.paths import CONTENT, STYLE, STYLE2
from support.app import small_params


def test_owner_from_xsrf_cookie_is_stable_across_masks():
    token = bytes(range(16))
    def cookie(mask: bytes) -> str:
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(token))
        return f"2|{mask.hex()}|{masked.hex()}|1700000000"
    first = owner.owner_from_xsrf_cookie(cookie(b"\x01\x02\x03\x04"))
    assert first == owner.owner_from_xsrf_cookie(cookie(b"\xff\x00\xaa\x55"))
    assert owner.valid_owner(first)
    assert owner.owner_from_xsrf_cookie("garbage") is None
    assert owner.owner_from_xsrf_cookie(None) is None


def test_resolve_owner_prefers_session_then_cookie_and_never_the_url():
    cookie = "2|" + "00" * 4 + "|" + "ab" * 16 + "|1"
    assert owner.resolve_owner("aaaa1111", cookie) == "aaaa1111"
    assert owner.resolve_owner(None, cookie) == owner.owner_from_xsrf_cookie(cookie)
    assert owner.resolve_owner("<script>", cookie) == owner.owner_from_xsrf_cookie(cookie)  # invalid ids are ignored
    fresh = owner.resolve_owner(None, None)
    assert owner.valid_owner(fresh) and fresh != owner.resolve_owner(None, None)


def test_durations_and_eta():
    assert common.fmt_duration(None) == "—"
    assert common.fmt_duration(5.4) == "5 s"
    assert common.fmt_duration(125) == "2 min 05 s"
    assert common.fmt_duration(3 * 3600 + 60) == "3 h 01 min"
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert common.elapsed_seconds(start, start + timedelta(seconds=42)) == 42


def test_examples_split_by_subfolder(tmp_path: Path):
    for rel in ("content/a.jpg", "style/b.png", "loose.webp", "reference/r.png", "notes.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    def names(kind: str) -> list[str]:
        return [p.name for p in common.list_examples(tmp_path, kind)]
    assert names("content") == ["a.jpg", "loose.webp"]
    assert names("style") == ["loose.webp", "b.png"]
    assert common.list_examples(None, "style") == []


def test_form_state_round_trips_params():
    p = Params(size=300, style_layers=("conv1_1", "conv3_1"), style_layer_weights=(2.0, 0.5),
               content=str(CONTENT), styles=(str(STYLE), str(STYLE2)), style_blend=(3.0, 1.0),
               original_colors=True, device="cpu")
    state = params_form.state_from_params(p)
    assert params_form.params_from_state(state, p.content, p.styles) == p
    # equal weights are stored as the engine's "equal" default, not spelled out
    default = params_form.params_from_state(params_form.state_from_params(Params()), "", ())
    assert default == Params()


def test_form_sorts_layers_and_keeps_invalid_values_for_the_engine_to_judge():
    state = params_form.state_from_params(Params())
    state["p_style_layers"] = ["conv5_1", "conv1_1"]
    state["p_size"] = 5
    p = params_form.params_from_state(state)
    assert p.style_layers == ("conv1_1", "conv5_1")
    assert "size" in validation_errors(p, need_images=False)


def test_presets_set_only_their_fields():
    state = params_form.preset_state("high quality")
    assert state == {f"p_{k}": v for k, v in PRESETS["high quality"].items()}
    p = preset("balanced", device="cpu")
    assert params_form.changed_from_preset(p, "balanced") == ["device"]
    assert params_form.changed_from_preset(p, None) == []


def test_sweep_values_and_errors():
    assert sweep.parse_values("1e3, 1e4 100000", float) == ([1000.0, 10000.0, 100000.0], None)
    assert sweep.parse_values("10, 20.5", int)[1] == "'20.5' is not a whole number"
    assert sweep.parse_values("", int)[1]
    base = small_params()
    runs = sweep.expand(base, [("style_weight", [10.0, 100.0]), ("iterations", [5, 10, 20])])
    assert [(p.style_weight, p.iterations) for p in runs][:3] == [(10.0, 5), (10.0, 10), (10.0, 20)]
    assert len(runs) == 6
    errors = sweep.sweep_errors(base, [("size", [64, 2])])
    assert errors["size"] == validation_errors(base.with_changes(size=2))["size"]
    assert "sweep" in sweep.sweep_errors(base, [("seed", list(range(5))), ("size", [32, 48, 64, 80])])


def test_sweep_grid_from_differing_params():
    runs = [SimpleNamespace(id=i, params=p) for i, p in enumerate(
        sweep.expand(small_params(), [("style_weight", [10.0, 100.0]), ("iterations", [5, 10])]))]
    axes, rows, cols, cells = sweep.grid(runs)
    assert axes == ["iterations", "style_weight"]  # Params' field order
    assert rows == [5, 10] and cols == [10.0, 100.0]
    assert cells[(10, 100.0)].params.iterations == 10
    axes, rows, cols, cells = sweep.grid(runs[:2])
    assert axes == ["iterations"] and rows == [None] and cols == [5, 10]


def test_long_jobs_are_polled_less_often():
    from app_pages.jobs import poll_seconds

    assert poll_seconds(None) == poll_seconds(20) == 1.0
    assert poll_seconds(300) == 3.0 and poll_seconds(3600) == 5.0


def test_worker_lines_say_what_each_worker_runs_a_cluster_worker_several() -> None:
    from worker.supervisor import WorkerState

    cpu, ray = WorkerState("cpu", 11, True, 1, None), WorkerState("ray", 12, True, 1, None)
    running = [SimpleNamespace(id=4, worker=f"{ray.name} on node 1a2b3c4d at 10.0.0.7 (pc3), cuda"),
               SimpleNamespace(id=3, worker=f"{ray.name} on node 5e6f7a8b at 10.0.0.8 (pc4), cpu"),
               SimpleNamespace(id=2, worker=f"{cpu.name}1")]  # another process whose pid starts alike
    assert common.worker_lines([cpu, ray], running) == [(True, "cpu worker idle"), (True, "ray worker running #3, #4")]
    down = WorkerState("ray", None, False, 2, "The ray worker exited with status 2: error: No Ray cluster …")
    assert common.worker_lines([down]) == [(False, "ray worker not running; retrying. " + down.last_error)]


def test_a_large_result_is_shown_scaled_and_a_small_one_as_it_is(tmp_path: Path) -> None:
    import io

    from PIL import Image

    big, small = tmp_path / "print.png", tmp_path / "small.png"
    Image.new("RGB", (2400, 1800), (200, 40, 40)).save(big)
    Image.new("RGB", (300, 200), (40, 40, 200)).save(small)
    with Image.open(io.BytesIO(common.display_image(big))) as shown:
        assert shown.format == "JPEG" and shown.size == (common.DISPLAY_SIDE, 1200)
    assert common.display_image(small) == small.read_bytes()  # the file itself: nothing to gain
    assert common.display_image(tmp_path / "gone.png") is None
