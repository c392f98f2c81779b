"""Tiled evaluation (engine/tiled.py, engine/tiles.py): the loss and the image's gradient equal
the whole image's, with two blended styles under masks, content, TV and a clip's temporal term;
too narrow a halo breaks that; a tiled run is the untiled run; the engine tiles when its memory
budget says so, reports tiles and stops between them.

Measured at 256 px with 128 px cores (docs/performance.md, "Prints"): float64, relative error of
the gradient (2-norm) 3e-16 with the engine's 80 px halo ("core") and with 160 px ("crop"),
5.7e-7 with a 64 px halo, 3.1e-2 with 16 px; float32, 5.5e-7 plain and 9.9e-7 with Winograd
(7.4e-5 at 512 px, where Winograd's own 4×4 tiles fall differently in each tile).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from engine import images, tiles
from engine.accel import Accel, prepare
from engine.gram import region_weights
from engine.memory import estimate_bytes
from engine.objective import Objective, style_grams
from engine.params import Params
from engine.tiled import TiledObjective, tiled_grams
from engine.transfer import Cancelled, _style_tensors, run, to_tensor
from engine.vgg import FeatureNet, load_weights
from harness.paths import CONTENT, STYLE, STYLE2

CPU = torch.device("cpu")
P = Params(content=str(CONTENT), styles=(str(STYLE), str(STYLE2)), style_blend=(2.0, 1.0), size=256,
           device="cpu", tv_weight=1e-2, temporal_weight=0.5)
CORE = 128


class Setting:
    """One evaluation's inputs at 256 px: a network in `dtype` (evaluated as `accel` does), the
    content, the styles' Grams, regions (a soft left-to-right split between the two styles), a
    temporal target and mask, and a noisy image to evaluate at."""

    def __init__(self, dtype: torch.dtype, accel: Accel = Accel(), size: int = P.size, core: int = CORE):
        self.accel, self.core = accel, core
        self.net = prepare(FeatureNet(load_weights("caffe"), P.content_layers + P.style_layers).to(dtype), accel)
        # contiguous: to_tensor's result is a permuted view, which the engine makes contiguous too
        self.content = to_tensor(images.resize_longest(images.load_image(CONTENT), size), CPU).to(dtype).contiguous()
        styles = [t.to(dtype) for t in _style_tensors([images.load_image(s) for s in P.styles], size, P, CPU)]
        self.grams = style_grams(P, self.net, styles, accel)
        h, w = self.content.shape[-2:]
        split = Image.linear_gradient("L").rotate(90).resize((w, h))
        self.regions = region_weights([split, None], (w, h), P.blend_weights(), CPU)
        generator = torch.Generator().manual_seed(0)
        self.temporal = (self.content.flip(-1), (torch.rand(1, 1, h, w, generator=generator) > 0.3).to(dtype))
        self.x = (self.content + 20 * torch.randn(self.content.shape, generator=generator).to(dtype)).clamp(0, 255)
        self.whole = self.evaluate(Objective(P, self.net, self.content, [], accel, self.regions, self.temporal,
                                             grams=self.grams))

    def tiled(self, margin: int, combine: str = "core") -> tuple[torch.Tensor, torch.Tensor, dict]:
        w, h = self.content.shape[-1], self.content.shape[-2]
        return self.evaluate(TiledObjective(P, self.net, self.content, self.grams, tiles.grid(w, h, self.core, margin),
                                            self.accel, self.regions, self.temporal, combine))

    def evaluate(self, objective) -> tuple[torch.Tensor, torch.Tensor, dict]:
        x = self.x.clone().requires_grad_(True)
        loss, parts = objective(x)
        loss.backward()
        return loss.detach(), x.grad, {k: v.item() for k, v in parts.items()}

    def errors(self, found: tuple[torch.Tensor, torch.Tensor, dict]) -> tuple[float, float]:
        """Relative errors against the whole image's: (loss, gradient's 2-norm)."""
        (loss, grad, _), (whole_loss, whole_grad, _) = found, self.whole
        return float((loss - whole_loss).abs() / whole_loss), float((grad - whole_grad).norm() / whole_grad.norm())


@pytest.fixture(scope="module")
def float64() -> Setting:
    return Setting(torch.float64)


def test_the_halos_follow_the_receptive_field() -> None:
    # conv5_1 sees 156 px (70 left of its position, 85 right): 70 px beyond a core's edge, 80 on
    # the 16 px grid; cropping the gradient needs the whole field less one, 155, so 160.
    assert (tiles.halo("conv5_1"), tiles.halo("conv5_1", "crop")) == (80, 160)
    assert tiles.halo("conv4_2") < tiles.halo("conv5_1")
    cut = tiles.grid(2048, 1536, 1024, 80)
    assert [(t.core.x0, t.core.y0, t.core.x1, t.core.y1) for t in cut] == [
        (0, 0, 1024, 768), (1024, 0, 2048, 768), (0, 768, 1024, 1536), (1024, 768, 2048, 1536)]
    assert (cut[0].box.x1, cut[0].box.y1, cut[3].box.x0, cut[3].box.y0) == (1104, 848, 944, 688)
    # Every pixel in exactly one core, offsets on the grid, boxes within the image.
    covered = np.zeros((1000, 1000), int)
    for t in tiles.grid(1000, 1000, 300, 80):
        covered[t.core.y0:t.core.y1, t.core.x0:t.core.x1] += 1
        assert t.core.x0 % 16 == t.core.y0 % 16 == t.box.x0 % 16 == t.box.y0 % 16 == 0
        assert 0 <= t.box.x0 and t.box.x1 <= 1000
    assert (covered == 1).all()
    # What engine.memory plans with: the count and the largest padded tile, without the tiles.
    for width, height, core, margin in ((2048, 1536, 1024, 80), (1000, 1000, 300, 80), (8192, 6144, 1184, 80),
                                        (700, 90, 64, 48), (300, 200, 512, 80)):
        cut = tiles.grid(width, height, core, margin)
        largest = max(cut, key=lambda t: t.box.width * t.box.height).box
        assert tiles.extent(width, height, core, margin) == (len(cut), (largest.width, largest.height))


@pytest.mark.parametrize("combine", ["core", pytest.param("crop", marks=pytest.mark.slow)])
def test_tiled_loss_and_gradient_are_the_whole_images_in_float64(float64: Setting, combine: str) -> None:
    found = float64.tiled(tiles.halo("conv5_1", combine), combine)
    loss, grad = float64.errors(found)
    assert loss < 1e-13 and grad < 1e-13, (loss, grad)  # measured 1e-16 and 3e-16
    for name, value in float64.whole[2].items():  # content, style, tv, temporal: each the same
        assert found[2][name] == pytest.approx(value, rel=1e-12), name


@pytest.mark.slow
def test_exact_where_the_image_ends_off_the_16_px_grid() -> None:
    # 200 x 150 px in cores of 96: the last tiles end where the poolings drop the odd pixels.
    setting = Setting(torch.float64, size=200, core=96)
    loss, grad = setting.errors(setting.tiled(tiles.halo("conv5_1")))
    assert loss < 1e-13 and grad < 1e-13, (loss, grad)


def test_too_narrow_a_halo_is_not_exact(float64: Setting) -> None:
    # Features near a core's edge then see the tile's zero padding instead of the image.
    loss, grad = float64.errors(float64.tiled(16))
    assert grad > 1e-2 and loss > 1e-4, (loss, grad)  # measured 3.1e-2 and 8.1e-4
    loss, grad = float64.errors(float64.tiled(64))
    assert grad > 1e-8, grad  # measured 5.7e-7: conv5_1 reaches 70 px


@pytest.mark.parametrize("accel", [Accel(), Accel(winograd=True)], ids=["plain", "winograd"])
def test_tiled_loss_and_gradient_in_float32(accel: Accel) -> None:
    setting = Setting(torch.float32, accel)
    loss, grad = setting.errors(setting.tiled(tiles.halo("conv5_1")))
    assert loss < 1e-6 and grad < 1e-5, (loss, grad)  # measured 0 and 5.5e-7 plain, 9.9e-7 Winograd


def test_a_style_images_grams_in_tiles_are_its_grams(float64: Setting) -> None:
    image = to_tensor(images.resize_longest(images.load_image(STYLE2), 300), CPU).double()
    whole = style_grams(P, float64.net, [image], Accel())[0]
    cut = tiles.grid(image.shape[-1], image.shape[-2], CORE, tiles.halo("conv5_1"))
    tiled = tiled_grams(float64.net, image, P.style_layers, Accel(), cut)
    for layer in P.style_layers:
        assert torch.allclose(tiled[layer], whole[layer], rtol=1e-12, atol=0), layer


SMALL = Params(content=str(CONTENT), styles=(str(STYLE),), size=192, iterations=20, device="cpu",
               multiscale=False, init="content")
# Just less than the whole 192 x 144 px image's estimate: it is evaluated in the largest tiles
# that fit, 2 x 2 cores of 96 x 72 px (most of the estimate is the weights, at this size).
TIGHT = estimate_bytes(SMALL, images.load_image(CONTENT).size) - 1


@pytest.mark.slow  # 34 s: 20 iterations twice, the tiled ones over four 128 px cores with 80 px halos
def test_a_tiled_run_is_the_untiled_run() -> None:
    reports = []
    whole = run(SMALL, accel=Accel())
    tiled = run(SMALL, accel=Accel(), memory_budget=TIGHT, on_progress=lambda pr: reports.append(
        (pr.iteration, pr.tile, pr.tiles)))
    assert whole.evaluation == "" and tiled.evaluation == "tiled, 4 tiles of 96 px"
    # Each iteration: its tiles as they finish (the iteration after the last report), then itself.
    assert reports[:6] == [(0, 1, 4), (0, 2, 4), (0, 3, 4), (0, 4, 4), (1, 0, 4), (1, 1, 4)]
    assert [r for r in reports if r[1] == 0] == [(i, 0, 4) for i in range(1, 21)]
    # The same arithmetic in another order: float32 rounding, grown over 20 L-BFGS steps. Whole
    # against whole with Winograd's convolutions differs as much (mean 1.2, 99th percentile 7 at
    # 256 px; tiled against whole, 0.6 and 4 there).
    a, b = (np.asarray(r.image, dtype=float) for r in (whole, tiled))
    assert np.abs(a - b).mean() < 1.5 and np.percentile(np.abs(a - b), 99) <= 8
    assert tiled.losses["total"] == pytest.approx(whole.losses["total"], rel=0.01)


def test_a_cancel_lands_between_tiles() -> None:
    reports = []

    def after_two_tiles() -> bool:
        return any(tile == 2 for _, tile, _ in reports)

    with pytest.raises(Cancelled):
        run(SMALL, accel=Accel(), memory_budget=TIGHT, should_cancel=after_two_tiles,
            on_progress=lambda pr: reports.append((pr.iteration, pr.tile, pr.tiles)))
    assert reports == [(0, 1, 4), (0, 2, 4)]


def test_tiles_at_the_final_scale_of_a_multiscale_adam_run_with_original_colours() -> None:
    p = SMALL.with_changes(size=256, iterations=2, multiscale=True, optimizer="adam", original_colors=True)
    budget = estimate_bytes(p, images.load_image(CONTENT).size) - 1  # 128 px fits whole, 256 px does not
    reports = []
    result = run(p, accel=Accel(channels_last=True), memory_budget=budget,
                 on_progress=lambda pr: reports.append((pr.size, pr.tile, pr.tiles)))
    assert {(size, tiles) for size, _, tiles in reports} == {(128, 0), (256, 4)}
    assert result.evaluation == "channels_last, tiled, 4 tiles of 128 px" and result.image.size == (256, 192)
