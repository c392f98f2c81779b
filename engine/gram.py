"""Gram matrices: the plain one, the fused Gram loss, and guided Grams for regional styles.

Guided Grams follow Gatys et al. 2017 ("Controlling Perceptual Factors in Neural Style
Transfer"): for style i, each style layer's features are weighted by style i's region, the mask
averaged down to that layer's size, and the Gram is normalised by the region's area, so it is the
region's own Gram, matched against style i's whole (unmasked) Gram.
"""
from __future__ import annotations

import functools
import operator
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image


def add_up(terms: Iterable[torch.Tensor]) -> torch.Tensor:
    """The sum of one or more loss terms, added in order as sum() adds them, without sum()'s
    leading int 0 (which would make the result's type "a tensor or 0")."""
    return functools.reduce(operator.add, terms)


def gram(features: torch.Tensor) -> torch.Tensor:
    _, c, h, w = features.shape
    f = features.reshape(c, h * w)
    return (f @ f.t()) / (c * h * w)


class GramMSE(torch.autograd.Function):
    """mean((gram(F) - A)²) with a hand-written backward.

    Autograd differentiates F·Fᵀ as a product of two tensors: two matmuls and an add. As G − A is
    symmetric, the gradient is one matmul, 4/(C²·n)·(G − A)·F: two matmuls for the Gram loss
    instead of three (what that saves an iteration: docs/performance.md, "What changed").
    """

    @staticmethod
    def forward(ctx: Any, features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _, c, h, w = features.shape
        f = features.reshape(c, h * w)
        diff = torch.mm(f, f.t()).div_(c * h * w).sub_(target)
        ctx.save_for_backward(f, diff)
        ctx.shape, ctx.n = features.shape, c * h * w
        return diff.pow(2).mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        f, diff = ctx.saved_tensors
        c = diff.shape[0]
        g = torch.mm(diff, f).mul_(grad * (4.0 / (c * c * ctx.n)))
        return g.view(ctx.shape), None


def region_weights(masks: list[Image.Image | None], size: tuple[int, int], blend: tuple[float, ...],
                   device: torch.device) -> torch.Tensor:
    """Per-pixel style weights, (styles, 1, H, W), summing to 1 at every pixel, from grey-level
    masks of `size` (width, height; None: everywhere) and the normalised blend weights b.

    Where masks overlap (their values sum past 1) the covering styles share the pixel in
    proportion to b·mask; where they cover a pixel only partly or not at all, the rest of it goes
    to every style by b, as without masks. So one all-white mask changes nothing, and with two
    styles, uncovered pixels take both blended.
    """
    planes = [torch.ones(size[1], size[0]) if m is None else
              torch.frombuffer(bytearray(m.tobytes()), dtype=torch.uint8).view(size[1], size[0]).float() / 255
              for m in masks]
    m = torch.stack(planes).unsqueeze(1).to(device)
    b = torch.tensor(blend, dtype=torch.float32, device=device).view(-1, 1, 1, 1)
    bm = b * m
    share = bm.sum(0, keepdim=True)
    covered = m.sum(0, keepdim=True).clamp(max=1)
    return torch.where(share > 0, covered * bm / share.clamp_min(1e-12), 0.0) + (1 - covered) * b


class GuidedStyle:
    """The style loss of one layer with regions: Σᵢ areaᵢ·mean((Gᵢ − Aᵢ)²), Gᵢ the Gram of the
    features weighted by region i (at the layer's size) over the region's area, areaᵢ the region's
    share of the image. With a constant weight of 1 this is the plain Gram loss, exactly."""

    def __init__(self, weights: torch.Tensor, layer_size: tuple[int, int], targets: list[torch.Tensor]):
        at_layer = F.adaptive_avg_pool2d(weights, layer_size)  # area averages: any size ratio
        self.terms: list[tuple[float, torch.Tensor, torch.Tensor]] = []
        for w, target in zip(at_layer, targets):
            area = float(w.mean())
            if area > 0:  # a region too small for this layer (or a style of blend weight 0)
                # √(w/area) on the features makes GramMSE's F·Fᵀ/(C·H·W) into Σ w·f·fᵀ/(C·Σw).
                self.terms.append((area, (w / area).sqrt().unsqueeze(0), target))

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        # Never empty: the regions' weights sum to 1 at every pixel, so some region has an area.
        return add_up(area * GramMSE.apply(features * scale, target) for area, scale, target in self.terms)
