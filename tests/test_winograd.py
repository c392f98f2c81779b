"""engine.winograd: the same convolution as torch's, and its exact adjoint for the gradient."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from engine import images, winograd
from engine.accel import Accel, evaluator, prepare
from engine.objective import Objective
from engine.params import Params
from engine.transfer import _style_tensors, to_tensor
from engine.vgg import LAYERS, FeatureNet, load_weights
from harness.paths import CONTENT, STYLE


def random_conv(c: int, k: int, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(c * 1000 + k)
    return torch.randn(k, c, 3, 3, generator=g, dtype=dtype), torch.randn(k, generator=g, dtype=dtype)


@pytest.mark.parametrize("shape", [(1, 3, 1, 1), (2, 4, 5, 7), (1, 8, 13, 17), (3, 16, 8, 8), (1, 5, 4, 9)])
def test_equals_direct_convolution_in_exact_arithmetic(shape):
    # In float64 Winograd's algebra is exact up to rounding: any error in the transforms, the
    # tiling of sizes that are not multiples of 4 or the batch's layout shows as a large difference.
    x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    weight, bias = random_conv(shape[1], 6)
    got = winograd.conv3x3(x, winograd.transform_kernel(weight), bias)
    want = F.conv2d(x, weight, bias, padding=1)
    assert got.shape == want.shape
    assert torch.allclose(got, want, rtol=0, atol=1e-10 * float(want.abs().max()))


def test_gradient_is_the_adjoint():
    # gradcheck compares the backward (the flipped, transposed kernel through the same routine)
    # with finite differences of the forward.
    torch.manual_seed(0)
    module = winograd.WinogradConv2d(torch.nn.Conv2d(3, 4, 3, padding=1).double().requires_grad_(False))
    x = torch.randn(1, 3, 30, 29, dtype=torch.float64, requires_grad=True)
    assert x.shape[2] * x.shape[3] >= winograd.MIN_POSITIONS
    assert torch.autograd.gradcheck(module, (x,))


def test_vgg_layers_in_float32_stay_within_1e5_of_torch():
    weights = load_weights("caffe")
    w, b = weights.convs[LAYERS.index("conv4_2")]
    conv = torch.nn.Conv2d(512, 512, 3, padding=1)
    conv.weight, conv.bias = torch.nn.Parameter(w, requires_grad=False), torch.nn.Parameter(b, requires_grad=False)
    fast = winograd.WinogradConv2d(conv)
    x = torch.relu(torch.randn(1, 512, 24, 32, generator=torch.Generator().manual_seed(2)))
    want = conv(x)
    assert torch.allclose(fast(x), want, rtol=0, atol=1e-5 * float(want.abs().max()))
    small = x[..., :12, :16]  # too few positions to pay: torch's own convolution, bit for bit
    assert torch.equal(fast(small), conv(small))


def test_adopt_takes_the_deep_layers_only():
    net = winograd.adopt(FeatureNet(load_weights("caffe"), ("conv1_1", "conv4_2", "conv5_1")))
    kinds = [(type(m).__name__, m.conv.out_channels if isinstance(m, winograd.WinogradConv2d) else m.out_channels)
             for m in net.body if isinstance(m, (torch.nn.Conv2d, winograd.WinogradConv2d))]
    assert kinds == [("Conv2d", 64)] * 2 + [("Conv2d", 128)] * 2 + [("WinogradConv2d", 256)] * 4 \
        + [("WinogradConv2d", 512)] * 5


def test_objective_loss_and_gradient_match_plain():
    # At 128 px the conv3 layers (32×24) go through Winograd and the deeper ones through torch.
    p = Params(content=str(CONTENT), styles=(str(STYLE),), size=128, device="cpu")
    content = to_tensor(images.resize_longest(images.load_image(CONTENT), p.size), torch.device("cpu"))
    styles = _style_tensors([images.load_image(STYLE)], p.size, p, torch.device("cpu"))
    x0 = (content + 30 * torch.randn(content.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 255)
    results = []
    for accel in (Accel(), Accel(winograd=True)):
        net = prepare(FeatureNet(load_weights("caffe"), p.content_layers + p.style_layers), accel)
        calls = []
        for m in net.body:
            if isinstance(m, winograd.WinogradConv2d):
                m.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[2] * i[0].shape[3]))
        x = x0.clone().requires_grad_(True)
        loss, _ = evaluator(Objective(p, net, content, styles, accel), x, accel)()
        results.append((float(loss.detach()), x.grad.clone(), calls))
    (plain, plain_grad, none), (fast, fast_grad, calls) = results
    assert none == [] and any(n >= winograd.MIN_POSITIONS for n in calls)
    assert fast == pytest.approx(plain, rel=1e-5)
    assert torch.allclose(fast_grad, plain_grad, rtol=0, atol=1e-4 * float(plain_grad.abs().max()))
