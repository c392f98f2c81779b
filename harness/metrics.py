"""How close two images are, the way the quality report and the tests measure it: the style
distance of Gram matrices on the network a run used, and the pixels' RMS difference."""
from __future__ import annotations

import torch
from PIL import Image

from engine.gram import gram
from engine.params import Params
from engine.transfer import pick_device, to_tensor
from engine.vgg import FeatureNet, load_weights


def style_net(p: Params) -> FeatureNet:
    """The network the run itself used, cut after its style layers."""
    device = pick_device(p.device)
    return FeatureNet(load_weights(p.weights, device), tuple(p.style_layers), p.pooling, device)


def grams(img: Image.Image, net: FeatureNet) -> dict[str, torch.Tensor]:
    device = next(net.parameters()).device
    with torch.no_grad():
        return {layer: gram(f) for layer, f in net(to_tensor(img, device)).items()}


def gram_distance(img: Image.Image, target: Image.Image, net: FeatureNet) -> float:
    """Mean over the style layers of ‖G(img) − G(target)‖ / ‖G(target)‖ (Frobenius).

    Relative, so each layer counts the same whatever its activation scale; Grams are normalised
    by C·H·W, so the two images need not be the same size."""
    a, b = grams(img, net), grams(target, net)
    return sum(float((a[k] - b[k]).norm() / b[k].norm()) for k in b) / len(b)


def pixel_rmse(a: Image.Image, b: Image.Image) -> float:
    """Root mean square RGB difference in 0..255 units (images of one size)."""
    x, y = to_tensor(a, torch.device("cpu")), to_tensor(b, torch.device("cpu"))
    return float((x - y).pow(2).mean().sqrt())
