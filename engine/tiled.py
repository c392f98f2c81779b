"""engine/objective.py's loss and its gradient evaluated tile by tile, exactly: for images whose
activations would not fit in memory at once (prints).

A style layer's Gram matrix is a sum over positions, and so is the content error. A pass without
gradients runs each tile through the network and adds up, over the feature positions the tile
stands for, every Gram (and the content error); the whole image's dL/dG follows. Then each tile
runs forward and backward with dL/dG held at that value: its loss is the surrogate
<dL/dG, G(tile)> per style term, whose gradient with respect to each of its features is the
whole loss's, plus its content error, and its input gradient is added into the image's.
engine/tiles.py says which positions a tile counts and why the result is exact. The first pass's
last tile keeps its graph and is the first of the second pass, so n tiles cost 2n − 1 forward
passes and n backward ones, against one of each for the whole image.

Total variation and a clip's temporal term are computed on the whole image, as they are cheap,
and by hand: autograd would hold several image-sized temporaries, hundreds of MB each at 8192 px.

When to tile is engine.memory's plan, asked here with what the device has free (memory_plans).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch

from engine import memory
from engine.accel import Accel
from engine.gram import GuidedStyle, add_up
from engine.layers import BY_NAME
from engine.objective import blended_targets, features
from engine.params import Params
from engine.tiles import Box, Tile
from engine.vgg import FeatureNet


def free_bytes(device: torch.device) -> int | None:
    """Free bytes on `device`, or None when it cannot be told."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        # Memory this process's caching allocator holds but does not use is free to us too.
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return memory.cpu_available_bytes()


def memory_plans(p: Params, device: torch.device, available: int | None, content: tuple[int, int],
                 style_sides: list[int], temporal: bool) -> list[memory.Plan]:
    """How each of p's scales is evaluated (engine.memory.plan) within `available` bytes of
    `device`, the style images' largest side at each scale being `style_sides`."""
    on_device = p.with_changes(device=device.type)
    host = memory.cpu_available_bytes() if device.type == "cuda" else None
    return [memory.plan(on_device, available, content, host_available=host, size=size, style_side=side,
                        temporal=temporal) for size, side in zip(p.scale_sizes(), style_sides)]


def untiled(accel: Accel) -> Accel:
    """`accel` as a tiled evaluation takes it: a tile's pass is eager Python over many tensors,
    which neither a CUDA graph nor torch.compile captures, so those two are left out."""
    return replace(accel, compile=False, cuda_graph=False, graph_step=False)


# Told after each tile (first pass and second): (tiles of the second pass done, tiles). It may
# raise (a cancel) to stop the evaluation there.
TileFn = Callable[[int, int], None]


class _GramDot(torch.autograd.Function):
    """<D, F·Fᵀ>/n for features F (1, C, h, w) and a symmetric D; the gradient, 2·D·F/n, comes
    from the product saved by the forward pass (autograd would compute two more)."""

    @staticmethod
    def forward(ctx: Any, features: torch.Tensor, d: torch.Tensor, n: int) -> torch.Tensor:
        flat = features.reshape(features.shape[1], -1)
        df = torch.mm(d, flat)
        ctx.save_for_backward(df)
        ctx.shape, ctx.n = features.shape, n
        return torch.dot(flat.reshape(-1), df.view(-1)) / n

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (df,) = ctx.saved_tensors
        return (df * (grad * 2.0 / ctx.n)).view(ctx.shape), None, None


def _slices(region: Box, tile: Tile, scale: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """`region`'s positions in a layer of `scale`: (in the tile's features, in the whole image's)."""
    r, origin = region.at(scale), tile.box.at(scale)
    return ((slice(r.y0 - origin.y0, r.y1 - origin.y0), slice(r.x0 - origin.x0, r.x1 - origin.x0)),
            (slice(r.y0, r.y1), slice(r.x0, r.x1)))


def crop(x: torch.Tensor, box: Box) -> torch.Tensor:
    return x[..., box.y0:box.y1, box.x0:box.x1]


def _gram_sum(f: torch.Tensor) -> torch.Tensor:
    flat = f.reshape(f.shape[1], -1)
    return torch.mm(flat, flat.t())


def tiled_grams(net: FeatureNet, image: torch.Tensor, layers: tuple[str, ...], accel: Accel,
                tiles: list[Tile]) -> dict[str, torch.Tensor]:
    """gram(features) of `image` at each of `layers`, summed over tiles (a style image too large
    for one pass)."""
    height, width = image.shape[-2:]
    sums: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for tile in tiles:
            feats = features(net, crop(image, tile.box), accel)
            for layer in layers:
                local, _ = _slices(tile.core, tile, BY_NAME[layer].downscale)
                g = _gram_sum(feats[layer][(..., *local)])
                sums[layer] = g if layer not in sums else sums[layer].add_(g)
    return {layer: g / (g.shape[0] * _positions(layer, width, height)) for layer, g in sums.items()}


def _positions(layer: str, width: int, height: int) -> int:
    s = BY_NAME[layer].downscale
    return (width // s) * (height // s)


@dataclass
class _Term:
    """One style Gram of a layer: without regions the blended styles' (scale None), with regions
    one per style, its features weighted by `scale` (engine.gram.GuidedStyle)."""

    layer: str
    weight: float  # the layer's weight, times the region's share of the image
    target: torch.Tensor
    scale: torch.Tensor | None  # (1, 1, h, w) over the whole image's layer


class TiledObjective:
    """engine.objective.Objective's loss, evaluated over `tiles` (engine.tiles.grid). Called like
    it; its loss's backward puts the whole image's gradient in x.grad. `combine` is engine.tiles'
    ("core" or "crop"; the tiles' halo must suit it)."""

    def __init__(self, p: Params, net: FeatureNet, content: torch.Tensor, grams: list[dict[str, torch.Tensor]],
                 tiles: list[Tile], accel: Accel = Accel(), regions: torch.Tensor | None = None,
                 temporal: tuple[torch.Tensor, torch.Tensor] | None = None, combine: str = "core",
                 on_tile: TileFn | None = None):
        self.p, self.net, self.accel, self.temporal = p, net, accel, temporal
        self.tiles, self.combine, self.on_tile = tiles, combine, on_tile
        height, width = content.shape[-2:]
        self.positions = {layer: _positions(layer, width, height) for layer in (*p.content_layers, *p.style_layers)}
        self.content_targets: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for tile in tiles:
                feats = features(net, crop(content, tile.box), accel)
                for layer in p.content_layers:
                    s = BY_NAME[layer].downscale
                    if layer not in self.content_targets:
                        f = feats[layer]
                        self.content_targets[layer] = f.new_empty(1, f.shape[1], height // s, width // s)
                    local, whole = _slices(tile.core, tile, s)
                    self.content_targets[layer][(..., *whole)] = feats[layer][(..., *local)]
        self.terms: list[_Term] = []
        targets = blended_targets(p, grams) if regions is None else {}
        for layer, weight in zip(p.style_layers, p.layer_weights()):
            if regions is None:
                self.terms.append(_Term(layer, weight, targets[layer], None))
                continue
            s = BY_NAME[layer].downscale
            guided = GuidedStyle(regions, (height // s, width // s), [g[layer] for g in grams])
            self.terms += [_Term(layer, weight * area, target, scale) for area, scale, target in guided.terms]
        self._parts: dict[str, torch.Tensor] = {}

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        value = _Tiled.apply(x, self)
        return value, dict(self._parts)

    def _term_features(self, feats: dict[str, torch.Tensor], term: _Term, region: Box, tile: Tile) -> torch.Tensor:
        local, whole = _slices(region, tile, BY_NAME[term.layer].downscale)
        f = feats[term.layer][(..., *local)]
        return f if term.scale is None else f * term.scale[(..., *whole)]

    def _content_error(self, feats: dict[str, torch.Tensor], region: Box, tile: Tile) -> torch.Tensor:
        """The content loss's share of `region`'s positions (F.mse_loss over the whole image)."""
        def error(layer: str, target: torch.Tensor) -> torch.Tensor:
            local, whole = _slices(region, tile, BY_NAME[layer].downscale)
            return (feats[layer][(..., *local)] - target[(..., *whole)]).pow(2).sum() / target.numel()

        return add_up(error(layer, target) for layer, target in self.content_targets.items())

    def _told(self, done: int) -> None:
        if self.on_tile is not None:
            self.on_tile(done, len(self.tiles))

    def evaluate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(content_weight·content + style_weight·style at x, its gradient with respect to x);
        the two parts are left in self._parts."""
        p, tiles = self.p, self.tiles
        sums = [term.target.new_zeros(term.target.shape) for term in self.terms]
        errors: list[torch.Tensor] = []  # the content error of each tile's core

        def accumulate(feats: dict[str, torch.Tensor], tile: Tile) -> None:
            for total, term in zip(sums, self.terms):
                total.add_(_gram_sum(self._term_features(feats, term, tile.core, tile)))
            errors.append(self._content_error(feats, tile.core, tile))

        with torch.no_grad():
            for tile in tiles[:-1]:
                accumulate(features(self.net, crop(x, tile.box), self.accel), tile)
                self._told(0)
        last = crop(x, tiles[-1].box).detach().requires_grad_(True)
        with torch.enable_grad():
            kept = features(self.net, last, self.accel)
        with torch.no_grad():
            accumulate({layer: f.detach() for layer, f in kept.items()}, tiles[-1])
            grams = [s / (term.target.shape[0] * self.positions[term.layer]) for s, term in zip(sums, self.terms)]
            content = add_up(errors)
            style = add_up(term.weight * (g - term.target).pow(2).mean() for g, term in zip(grams, self.terms))
            # d mean((G − A)²) / dG, times the term's weight: held while the tiles go back.
            slopes = [term.weight * 2.0 * (g - term.target) / g.numel() for g, term in zip(grams, self.terms)]
        grad = torch.zeros_like(x)
        for done, tile in enumerate([tiles[-1], *tiles[:-1]], start=1):
            if tile is not tiles[-1]:
                last = crop(x, tile.box).detach().requires_grad_(True)
                with torch.enable_grad():
                    kept = features(self.net, last, self.accel)
            self._backward(kept, last, tile, slopes, grad)
            kept = {}
            self._told(done)
        parts = {"content": content.detach(), "style": style.detach(),
                 **_image_terms(p, x.detach(), self.temporal, grad)}
        self._parts = parts
        total = p.content_weight * parts["content"] + p.style_weight * parts["style"] + p.tv_weight * parts["tv"]
        if "temporal" in parts:
            total = total + p.temporal_weight * parts["temporal"]
        return total, grad

    def _backward(self, feats: dict[str, torch.Tensor], x_tile: torch.Tensor, tile: Tile,
                  slopes: list[torch.Tensor], grad: torch.Tensor) -> None:
        """One tile's surrogate loss back to its pixels, added into `grad`."""
        p = self.p
        region = tile.core if self.combine == "core" else tile.box
        with torch.enable_grad():
            surrogate = p.content_weight * self._content_error(feats, region, tile)
            for term, slope in zip(self.terms, slopes):
                f = self._term_features(feats, term, region, tile)
                surrogate = surrogate + p.style_weight * _GramDot.apply(f, slope, self.positions[term.layer] * f.shape[1])
            surrogate.backward()
        found = x_tile.grad
        assert found is not None  # x_tile requires grad, and every term reaches it
        if self.combine == "core":
            crop(grad, tile.box).add_(found)
        else:
            core = Box(tile.core.x0 - tile.box.x0, tile.core.y0 - tile.box.y0,
                       tile.core.x1 - tile.box.x0, tile.core.y1 - tile.box.y0)
            crop(grad, tile.core).add_(crop(found, core))


def _image_terms(p: Params, x: torch.Tensor, temporal: tuple[torch.Tensor, torch.Tensor] | None,
                 grad: torch.Tensor) -> dict[str, torch.Tensor]:
    """engine.objective.image_terms' parts, their weighted gradient added into `grad`, holding one
    image-sized difference at a time."""
    tv = x.new_zeros(())
    for dim in (-2, -1):
        n = x.shape[dim]
        d = x.narrow(dim, 1, n - 1) - x.narrow(dim, 0, n - 1)
        tv += torch.dot(d.reshape(-1), d.reshape(-1)) / 2
        grad.narrow(dim, 1, n - 1).add_(d, alpha=p.tv_weight)
        grad.narrow(dim, 0, n - 1).sub_(d, alpha=p.tv_weight)
        del d
    parts = {"tv": tv}
    if temporal is not None:
        target, mask = temporal
        n = mask[0, 0].numel()
        error = x - target
        weighted = error * mask
        parts["temporal"] = torch.dot(error.reshape(-1), weighted.reshape(-1)) / n
        grad.add_(weighted, alpha=2 * p.temporal_weight / n)
    return parts


class _Tiled(torch.autograd.Function):
    """The tiled content and style loss as one autograd node of the image: its forward runs both
    passes, its backward hands out the gradient they found."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, objective: TiledObjective) -> torch.Tensor:
        value, ctx.grad = objective.evaluate(x)
        return value

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        # In place and let go: it becomes x.grad, with no second image-sized copy.
        found, ctx.grad = ctx.grad, None
        return found.mul_(grad), None
