"""Params: defaults, presets, JSON round trip, and every validation rule."""
import json

import pytest

from engine.params import HELP, LAYERS, PRESETS, Params, ParamsError, eta_seconds, preset, validate, validation_errors

GOOD = Params(content="c.jpg", styles=("s.jpg",))


def test_defaults_follow_the_method():
    p = Params()
    assert p.content_layers == ("conv4_2",)
    assert p.style_layers == ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
    assert p.optimizer == "lbfgs" and 300 <= p.iterations <= 1000
    assert validation_errors(GOOD) == {}


def test_json_round_trip_keeps_every_field():
    p = GOOD.with_changes(styles=("a.jpg", "b.jpg"), style_blend=(0.3, 0.7), style_layer_weights=(1, 2, 3, 4, 5),
                          original_colors=True, seed=7)
    back = Params.from_json(p.to_json())
    assert back == p
    assert json.loads(p.to_json())["styles"] == ["a.jpg", "b.jpg"]


def test_from_dict_ignores_unknown_keys():
    assert Params.from_dict({**GOOD.to_dict(), "from_the_future": 1}) == GOOD


def test_presets_are_valid_and_distinct():
    sizes = [preset(name, content="c", styles=("s",)).size for name in PRESETS]
    assert sizes == sorted(sizes) and len(set(sizes)) == 3
    for name in PRESETS:
        validate(preset(name, content="c", styles=("s",)))
    with pytest.raises(ParamsError):
        preset("nope")


@pytest.mark.parametrize("field, value, fragment", [
    ("content", "", "content image"),
    ("styles", (), "at least one style"),
    ("styles", tuple(f"s{i}" for i in range(9)), "at most 8"),
    ("size", 8, "at least 16"),
    ("size", 100_000, "at most 16384"),
    ("size", 12.5, "whole number"),
    ("iterations", 0, "at least 1"),
    ("iterations", True, "whole number"),
    ("optimizer", "sgd", "lbfgs, adam"),
    ("learning_rate", 0, "greater than 0"),
    ("content_weight", -1, "at least 0"),
    ("style_weight", float("nan"), "must be a number"),
    ("tv_weight", "lots", "must be a number"),
    ("content_layers", ("conv9_9",), "unknown layer 'conv9_9'"),
    ("content_layers", (), "at least one layer"),
    ("style_layers", ("conv1_1", "conv1_1"), "twice"),
    ("style_layer_weights", (1.0, 2.0), "2 weights but there are 5 style layers"),
    ("style_layer_weights", (-1.0, 1, 1, 1, 1), "from 0 to"),
    ("style_layer_weights", (0.0,) * 5, "above 0"),
    ("style_blend", (1.0, 1.0), "2 weights but there are 1 style images"),
    ("init", "random", "content, noise"),
    ("seed", -5, "at least 0"),
    ("style_scale", 0.0, "at least 0.05"),
    ("original_colors", "yes", "true or false"),
    ("multiscale", 1, "true or false"),
    ("pooling", "min", "max, avg"),
    ("device", "tpu", "auto, cpu, cuda"),
    ("preview_every", -1, "at least 0"),
    ("weights", "", "caffe, torchvision"),
])
def test_each_rule_gives_one_clear_message(field, value, fragment):
    errors = validation_errors(GOOD.with_changes(**{field: value}))
    assert list(errors) == [field], errors
    assert fragment in errors[field]
    with pytest.raises(ParamsError) as info:
        validate(GOOD.with_changes(**{field: value}))
    assert info.value.errors == errors


def test_settings_alone_can_be_checked_before_upload():
    assert validation_errors(Params(), need_images=False) == {}
    assert "size" in validation_errors(Params(size=3), need_images=False)


def test_multiscale_schedule_is_coarse_to_fine():
    p = GOOD.with_changes(size=1024, iterations=400)
    assert (p.scale_sizes(), p.total_iterations()) == ([128, 256, 512, 1024], 1600)
    assert GOOD.with_changes(size=1024, multiscale=False).scale_sizes() == [1024]
    assert GOOD.with_changes(size=64).scale_sizes() == [64]


def test_a_print_runs_only_the_scales_above_the_result_it_grows_from():
    p = GOOD.with_changes(size=2048, iterations=100, multiscale_from=512)
    assert (p.scale_sizes(), p.total_iterations()) == ([1024, 2048], 200)
    assert p.with_changes(multiscale_from=0).scale_sizes() == [128, 256, 512, 1024, 2048]
    assert p.with_changes(multiscale_from=600).scale_sizes() == [1024, 2048]
    assert p.with_changes(multiscale_from=2048).scale_sizes() == [2048]
    assert p.with_changes(multiscale_from=512, multiscale=False).scale_sizes() == [2048]
    # The work (and so progress and ETA) is only the new, larger scales'.
    assert p.work() == (1024**2 + 2048**2) * 100


def test_starting_from_an_image():
    assert validation_errors(GOOD.with_changes(init="image", init_image="/tmp/small.png")) == {}
    assert "choose the image" in validation_errors(GOOD.with_changes(init="image"))["init_image"]
    assert validation_errors(GOOD.with_changes(init="image"), need_images=False) == {}  # the UI, before the upload
    assert "only when init is image" in validation_errors(GOOD.with_changes(init_image="/tmp/small.png"))["init_image"]
    assert list(validation_errors(GOOD.with_changes(multiscale_from=-1))) == ["multiscale_from"]
    back = Params.from_json(GOOD.with_changes(init="image", init_image="x.png", multiscale_from=512).to_json())
    assert (back.init, back.init_image, back.multiscale_from) == ("image", "x.png", 512)
    assert "init_image" in HELP and "multiscale_from" in HELP


def test_a_style_image_is_never_enlarged_past_its_own_size():
    p = GOOD.with_changes(style_scale=1.0)
    assert [p.style_side(size, 1000) for size in (512, 1000, 2048, 8192)] == [512, 1000, 1000, 1000]
    assert p.style_side(8192) == 8192  # its size unknown: as asked
    assert p.with_changes(style_scale=2.0).style_side(8192, 1000) == 2000  # bigger strokes, as asked
    assert p.with_changes(style_scale=0.5).style_side(512, 1000) == 256


def test_layers_are_vgg19s():
    assert len(LAYERS) == 16 and LAYERS[0] == "conv1_1" and LAYERS[-1] == "conv5_4"


def test_package_import_stays_free_of_torch():
    import subprocess
    import sys
    code = "import engine, engine.params, sys; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_progress_weighs_each_scale_by_its_pixels():
    # The "balanced" run: 630 of 900 iterations (70 %) had taken 222 s of 657.
    p = preset("balanced", size=512, content="c.png", styles=("s.png",))
    assert p.scale_sizes() == [128, 256, 512] and p.total_iterations() == 900
    done = p.work_done(630)
    assert done == pytest.approx((128**2 * 300 + 256**2 * 300 + 512**2 * 30) / ((128**2 + 256**2 + 512**2) * 300))
    assert 0.30 < done < 0.34  # the time that had passed: 222 / 657 = 0.34
    assert 400 < eta_seconds(222, done) < 500  # 435 s were left; counting iterations said 95
    assert p.work_done(0) == 0 and p.work_done(900) == p.work_done(5000) == 1
    single = p.with_changes(multiscale=False, iterations=100)
    assert single.work_done(25) == 0.25 and eta_seconds(10.0, 0.25) == 30.0
    assert eta_seconds(10.0, 0) is None and eta_seconds(None, 0.5) is None
    assert p.work(aspect=0.75) == pytest.approx(0.75 * p.work())


def test_a_clip_s_work_counts_its_frames():
    # 3 frames: the first a full two-scale run, the others frame_iterations at the final size.
    p = Params(content="c.gif", styles=("s.png",), size=256, iterations=100, frame_iterations=50)
    first = (128**2 + 256**2) * 100
    assert p.work(frames=3) == first + 2 * 256**2 * 50
    assert p.work_done(200, frame=1, frames=3) == pytest.approx(first / p.work(frames=3))
    assert p.work_done(25, frame=3, frames=3) == pytest.approx((first + 1.5 * 256**2 * 50) / p.work(frames=3))
    assert p.work_done(50, frame=3, frames=3) == 1 and p.work_done(0, frames=3) == 0
    assert p.work(frames=1) == p.work()


@pytest.mark.parametrize("device, ok", [("auto", True), ("cpu", True), ("cuda", True), ("cuda:0", True),
                                        ("cuda:12", True), ("cuda:", False), ("cuda:x", False), ("gpu", False),
                                        ("CUDA:1", False), (1, False)])
def test_devices_include_one_gpu_of_several(device, ok: bool):
    p = Params(content="c.png", styles=("s.png",), device=device)
    assert ("device" not in validation_errors(p)) is ok
