"""Each quality option moves the result the way it should: 64 px, 20 iterations, CPU.

Runs are shared between tests (cached by their changes to BASE), so the file makes eight runs.
Distances are bench.quality's, the ones the quality figures report.
"""
from __future__ import annotations

from functools import cache
from typing import Any

import pytest
import torch
from PIL import Image

from engine import images
from engine.params import Params
from engine.transfer import run, to_tensor
from harness.metrics import gram_distance, pixel_rmse, style_net
from harness.paths import CONTENT, STYLE, STYLE2

SIZE = 64
# Content init: deterministic and far enough along in 20 iterations for every effect to show.
BASE = Params(content=str(CONTENT), styles=(str(STYLE),), size=SIZE, iterations=20, device="cpu",
              multiscale=False, init="content", seed=0)


@cache
def result(**changes: Any) -> Image.Image:
    return run(BASE.with_changes(**changes)).image


@cache
def picture(path: str, longest: int) -> Image.Image:
    return images.resize_longest(images.load_image(path), longest)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """At 64 px a second thread buys little, and on a busy 2-core machine OpenMP's barriers
    make two threads 5-9x slower than one (measured: 20 iterations 29 s vs 3-6 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def net():
    return style_net(BASE)


def pixels(img: Image.Image) -> torch.Tensor:
    return to_tensor(img, torch.device("cpu"))[0]


def chroma_error(img: Image.Image, content: Image.Image) -> float:
    """Mean absolute Cb/Cr difference, 0..255 units."""
    a, b = pixels(img.convert("YCbCr"))[1:], pixels(content.resize(img.size).convert("YCbCr"))[1:]
    return float((a - b).abs().mean())


def total_variation(img: Image.Image) -> float:
    """Mean absolute difference between neighbouring pixels, 0..255 units."""
    x = pixels(img)
    return float((x[:, 1:] - x[:, :-1]).abs().mean() + (x[:, :, 1:] - x[:, :, :-1]).abs().mean())


def test_original_colors_keep_the_contents_chroma():
    content = picture(str(CONTENT), SIZE)
    styled, kept = chroma_error(result(), content), chroma_error(result(original_colors=True), content)
    # Only YCbCr rounding separates the kept chroma from the photo's.
    assert kept < 2.0 < styled / 2, (kept, styled)
    # Luminance still comes from the stylised result.
    assert pixel_rmse(result(original_colors=True).convert("L").convert("RGB"),
                      result().convert("L").convert("RGB")) < 2.0


def test_style_scale_matches_the_style_at_that_scale(net):
    big, small = result(style_scale=2.0), result(style_scale=0.5)
    style_big, style_small = picture(str(STYLE), 2 * SIZE), picture(str(STYLE), SIZE // 2)
    assert gram_distance(big, style_big, net) < gram_distance(small, style_big, net)
    assert gram_distance(small, style_small, net) < gram_distance(big, style_small, net)


@pytest.mark.slow
def test_blend_weights_order_the_distances_to_each_style(net):
    runs = [result(styles=(str(STYLE), str(STYLE2)), style_blend=w) for w in ((1.0, 0.0), (0.5, 0.5), (0.0, 1.0))]
    to_first = [gram_distance(r, picture(str(STYLE), SIZE), net) for r in runs]
    to_second = [gram_distance(r, picture(str(STYLE2), SIZE), net) for r in runs]
    assert to_first == sorted(to_first), to_first
    assert to_second == sorted(to_second, reverse=True), to_second


def test_avg_pooling_changes_the_result():
    assert pixel_rmse(result(pooling="avg"), result()) > 10.0


def test_higher_tv_weight_smooths_the_result():
    smooth, default = total_variation(result(tv_weight=10.0)), total_variation(result())
    assert smooth < 0.9 * default, (smooth, default)
