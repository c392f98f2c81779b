"""The loss at one scale, evaluated on the whole image at once: Gatys et al.'s content and style
terms, total variation and a clip's temporal term (engine/tiled.py evaluates the same loss tile by
tile, when the whole image's activations would not fit).

Loss scales follow jcjohnson/neural-style, so its well-known weights carry over: content is the
mean squared feature error, style the mean squared error of Grams normalised by C·H·W, total
variation the sum of squared neighbour differences. The image lives in RGB 0..255 units.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.accel import Accel, autocast, network_input
from engine.gram import GramMSE, GuidedStyle, add_up, gram
from engine.params import Params
from engine.vgg import FeatureNet


def features(net: FeatureNet, x: torch.Tensor, accel: Accel) -> dict[str, torch.Tensor]:
    """The network's outputs in float32 (float64 for a network cast to it), whatever precision
    the network ran in."""
    with autocast(x.device, accel):
        feats = net(network_input(x, accel))
    return {layer: f.to(torch.promote_types(f.dtype, torch.float32)) for layer, f in feats.items()}


def style_grams(p: Params, net: FeatureNet, styles: list[torch.Tensor], accel: Accel) -> list[dict[str, torch.Tensor]]:
    """Each style image's Gram matrix at every style layer."""
    with torch.no_grad():
        feats = [features(net, s, accel) for s in styles]
        return [{layer: gram(f[layer]) for layer in p.style_layers} for f in feats]


def blended_targets(p: Params, grams: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Blended styles share one target Gram per layer (as neural-style does)."""
    return {layer: add_up(w * g[layer] for w, g in zip(p.blend_weights(), grams)) for layer in p.style_layers}


def image_terms(p: Params, x: torch.Tensor, temporal: tuple[torch.Tensor, torch.Tensor] | None
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss's terms on the image itself, total variation and a clip's temporal term,
    weighted and summed, and each on its own. Image-sized and cheap: never tiled."""
    tv = ((x[..., 1:, :] - x[..., :-1, :]).pow(2).sum() + (x[..., :, 1:] - x[..., :, :-1]).pow(2).sum()) / 2
    total, parts = p.tv_weight * tv, {"tv": tv}
    if temporal is not None:
        target, mask = temporal
        # Per pixel, as Ruder et al.: the squared change where the motion is reliable.
        parts["temporal"] = ((x - target).pow(2) * mask).sum() / mask[0, 0].numel()
        total = total + p.temporal_weight * parts["temporal"]
    return total, parts


class Objective:
    """The weighted loss at one scale, with content and style targets computed once."""

    def __init__(self, p: Params, net: FeatureNet, content: torch.Tensor, styles: list[torch.Tensor],
                 accel: Accel = Accel(), regions: torch.Tensor | None = None,
                 temporal: tuple[torch.Tensor, torch.Tensor] | None = None,
                 grams: list[dict[str, torch.Tensor]] | None = None):
        """`regions`: per-pixel style weights at the content's size (engine.gram.region_weights),
        or None for no masks. `temporal`: a clip frame's (previous result warped, reliability
        mask), which the result keeps to with `p.temporal_weight` (Ruder et al. 2016). `grams`:
        the style images' Grams computed before (Reuse); then `styles` is not looked at."""
        self.p, self.net, self.accel, self.temporal = p, net, accel, temporal
        self.style_targets: dict[str, torch.Tensor] = {}
        self.guided: dict[str, GuidedStyle] = {}
        with torch.no_grad():
            feats = self.features(content)
            self.content_targets = {layer: feats[layer] for layer in p.content_layers}
            layer_sizes = {layer: (feats[layer].shape[-2], feats[layer].shape[-1]) for layer in p.style_layers}
            if grams is None:
                grams = style_grams(p, net, styles, accel)
            if regions is None:
                self.style_targets = blended_targets(p, grams)
            else:
                self.guided = {layer: GuidedStyle(regions, layer_sizes[layer], [g[layer] for g in grams])
                               for layer in p.style_layers}
        self.layer_weights = dict(zip(p.style_layers, p.layer_weights()))

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return features(self.net, x, self.accel)

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        p = self.p
        feats = self.features(x)
        content = add_up(F.mse_loss(feats[layer], target) for layer, target in self.content_targets.items())
        if self.guided:
            style = add_up(self.layer_weights[layer] * loss(feats[layer]) for layer, loss in self.guided.items())
        else:
            style = add_up(self.layer_weights[layer] * GramMSE.apply(feats[layer], target)
                           for layer, target in self.style_targets.items())
        on_image, parts = image_terms(p, x, self.temporal)
        total = p.content_weight * content + p.style_weight * style + on_image
        return total, {"content": content, "style": style, **parts}
