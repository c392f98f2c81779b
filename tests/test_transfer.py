"""The optimisation on real weights and real images, at tiny sizes on CPU."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

from engine import images, transfer
from engine.gram import gram
from engine.objective import Objective
from engine.params import Params
from engine.transfer import Cancelled, Reuse, run, to_image, to_tensor
from engine.vgg import FeatureNet, load_weights
from harness.paths import CONTENT, STYLE, STYLE2

TINY = Params(content=str(CONTENT), styles=(str(STYLE),), size=64, iterations=30, device="cpu",
              multiscale=False, init="noise", seed=3)


def gram_distance(img: Image.Image, style_path, size: int, layers=TINY.style_layers) -> float:
    """Mean squared Gram distance between an image and a painting, over the style layers."""
    net = FeatureNet(load_weights("caffe"), layers)
    style = images.resize_longest(images.load_image(style_path), size)
    with torch.no_grad():
        a, b = net(to_tensor(img, torch.device("cpu"))), net(to_tensor(style, torch.device("cpu")))
    return sum(float(((gram(a[layer]) - gram(b[layer])) ** 2).mean()) for layer in layers)


def test_total_loss_falls_by_a_large_factor():
    seen = []
    result = run(TINY, on_progress=lambda pr: seen.append(pr.losses["total"]))
    assert len(seen) == TINY.iterations
    assert seen[-1] < seen[0] / 10, seen
    assert result.image.size == (64, 48)
    assert result.weights_name == "caffe" and len(result.weights_sha256) == 64


def test_style_distance_to_the_painting_falls():
    content = images.resize_longest(images.load_image(CONTENT), 64)
    result = run(TINY.with_changes(init="content"))
    before = gram_distance(content, STYLE, 64)
    after = gram_distance(result.image, STYLE, 64)
    assert after < before / 3, (before, after)


def test_fixed_seed_reproduces_the_result_on_cpu():
    p = TINY.with_changes(iterations=5)
    a, b = run(p).image, run(p).image
    assert a.tobytes() == b.tobytes()
    c = run(p.with_changes(seed=4)).image
    assert c.tobytes() != a.tobytes()


def test_adam_also_lowers_the_loss():
    seen = []
    run(TINY.with_changes(optimizer="adam", iterations=15), on_progress=lambda pr: seen.append(pr.losses["total"]))
    assert seen[-1] < seen[0] / 2


def test_cancel_stops_within_one_iteration():
    seen = []
    with pytest.raises(Cancelled):
        run(TINY, on_progress=lambda pr: seen.append(pr.iteration), should_cancel=lambda: len(seen) >= 3)
    assert seen == [1, 2, 3]


def test_cancel_lands_within_an_iteration_on_the_cpu(monkeypatch):
    # At 2048 px on two cores one iteration takes minutes; a cancel should not wait for its end.
    monkeypatch.setattr(transfer, "ASK_WITHIN_ITERATION_S", 0.0)
    asked: list[int] = []
    seen: list[int] = []

    def count() -> bool:
        asked.append(len(seen))
        return False

    run(TINY.with_changes(iterations=3), on_progress=lambda pr: seen.append(pr.iteration), should_cancel=count)
    per_iteration = asked.count(1)  # between iteration 1's report and iteration 2's
    relus = 13  # conv1_1 .. conv5_1, where the network ends
    # Once before it, and after each convolution going forward and coming back (L-BFGS evaluates
    # once a step).
    assert per_iteration == 1 + 2 * relus
    asked.clear()
    seen.clear()

    def on_the_fourth_ask_after_iteration_1() -> bool:
        if seen == [1]:
            asked.append(1)
        return len(asked) == 4

    with pytest.raises(Cancelled):
        run(TINY, on_progress=lambda pr: seen.append(pr.iteration), should_cancel=on_the_fourth_ask_after_iteration_1)
    assert seen == [1]  # stopped inside iteration 2


def test_cancel_lands_between_the_set_ups_forward_passes():
    # At a large size on the CPU each of these passes takes as long as an iteration.
    reuse = Reuse()
    with pytest.raises(Cancelled):
        run(TINY, should_cancel=lambda: True, reuse=reuse)
    assert reuse.computed == 0  # the style image never went through the network
    asked: list[int] = []

    def once_the_grams_are_there() -> bool:
        asked.append(reuse.computed)
        return reuse.computed > 0

    with pytest.raises(Cancelled):
        run(TINY, should_cancel=once_the_grams_are_there, reuse=reuse)
    assert asked == [0, 1]  # asked again after the style pass, before the content pass



def test_progress_read_a_step_late_is_the_same_progress(monkeypatch):
    """On CUDA a step's losses are read after the next step is queued (engine.transfer.
    progress_lag); forced here on the CPU, every iteration is still reported once, in order, at its
    own scale, with its own losses and preview, and the run itself is unchanged."""
    monkeypatch.setattr("engine.params.MULTISCALE_MIN_SIZE", 32)
    p = TINY.with_changes(iterations=5, multiscale=True, preview_every=2)

    def reported(lag: int) -> tuple[list[tuple], Image.Image]:
        monkeypatch.setattr("engine.transfer.progress_lag", lambda device: lag)
        seen = []
        result = run(p, on_progress=lambda pr: seen.append(
            (pr.iteration, pr.size, pr.losses, pr.preview and pr.preview.tobytes())))
        assert result.losses == seen[-1][2]
        return seen, result.image

    at_once, image = reported(0)
    late, late_image = reported(1)
    assert [(i, size) for i, size, *_ in late] == [(i, 32) for i in range(1, 6)] + [(i, 64) for i in range(6, 11)]
    assert [i for i, _, _, preview in late if preview] == [2, 4, 5, 6, 8, 10]
    assert late == at_once
    assert late_image.tobytes() == image.tobytes()


def test_previews_every_n_iterations_and_between_scales():
    p = TINY.with_changes(size=128, iterations=4, multiscale=True, preview_every=3)
    # 64 px is below the multiscale floor, so 128 px runs as one scale: previews at 3 only.
    result = run(p)
    assert [i for i, _ in result.previews] == [3]
    assert result.image.size == (128, 96)


def test_multiscale_runs_each_scale_and_reports_sizes(monkeypatch):
    monkeypatch.setattr("engine.params.MULTISCALE_MIN_SIZE", 32)
    sizes = []
    result = run(TINY.with_changes(size=64, iterations=4, multiscale=True),
                 on_progress=lambda pr: sizes.append(pr.size))
    assert sizes == [32] * 4 + [64] * 4
    assert [i for i, _ in result.previews] == [4]  # the coarse scale's last image
    assert result.image.size == (64, 48)


def test_the_coarse_stage_is_the_small_run_itself(monkeypatch):
    """What makes a small preview predict the large result: the large run starts from it."""
    monkeypatch.setattr("engine.params.MULTISCALE_MIN_SIZE", 32)
    p = TINY.with_changes(iterations=5, multiscale=True, init="content")
    large, small = run(p.with_changes(size=64)), run(p.with_changes(size=32))
    assert large.previews[0][1].tobytes() == small.image.tobytes()


def test_blended_styles_target_the_weighted_gram():
    p = TINY.with_changes(styles=(str(STYLE), str(STYLE2)), style_blend=(3.0, 1.0))
    net = FeatureNet(load_weights("caffe"), p.style_layers + p.content_layers)
    dev = torch.device("cpu")
    imgs = [images.resize_longest(images.load_image(s), 64) for s in p.styles]
    t = [to_tensor(i, dev) for i in imgs]
    objective = Objective(p, net, t[0], t)
    with torch.no_grad():
        g = [gram(net(x)["conv3_1"]) for x in t]
    assert torch.allclose(objective.style_targets["conv3_1"], 0.75 * g[0] + 0.25 * g[1], rtol=1e-4)


def test_bad_image_raises_image_error(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"<html>not an image</html>")
    with pytest.raises(images.ImageError):
        run(TINY.with_changes(content=str(bad)))


def test_fused_gram_loss_matches_autograd():
    from engine.gram import GramMSE
    f = torch.randn(1, 4, 5, 3, dtype=torch.float64, requires_grad=True)
    a = torch.randn(4, 4, dtype=torch.float64)
    a = a + a.t()  # targets are Grams, hence symmetric
    assert torch.autograd.gradcheck(lambda t: GramMSE.apply(t, a), (f,))
    assert torch.allclose(GramMSE.apply(f, a), ((gram(f) - a) ** 2).mean())


def test_images_round_trip_through_tensors_rounded_and_clamped():
    # Odd sizes catch a swapped width and height; values outside 0..255 and between grey levels
    # catch a missing clamp or round (the saved image is what gets judged and downloaded).
    photo = images.resize_longest(images.load_image(CONTENT), 37)
    assert to_image(to_tensor(photo, torch.device("cpu"))).tobytes() == photo.tobytes()
    x = torch.tensor([[-20.0, 0.4, 0.6], [127.5, 254.6, 300.0]]).expand(1, 3, 2, 3)
    image = to_image(x)
    assert (image.mode, image.size) == ("RGB", (3, 2))
    assert [image.getpixel((i, j))[0] for j in range(2) for i in range(3)] == [0, 0, 1, 128, 255, 255]
