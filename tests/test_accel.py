"""engine.accel: every way of evaluating the objective computes the same loss and gradient."""
from __future__ import annotations

import pytest
import torch

from conftest import CONTENT, STYLE
from engine import images
from engine.accel import Accel, default_accel, evaluator
from engine.params import Params
from engine.transfer import Objective, _style_tensors, run, to_tensor
from engine.vgg import FeatureNet, load_weights

CPU = torch.device("cpu")
P = Params(content=str(CONTENT), styles=(str(STYLE),), size=48, iterations=3, multiscale=False,
           device="cpu", seed=0)


def loss_and_gradient(accel: Accel) -> tuple[float, torch.Tensor, list[tuple[bool, torch.dtype]]]:
    """The loss and gradient at one point, and the (channels-last, dtype) of every conv's output."""
    net = FeatureNet(load_weights("caffe"), P.content_layers + P.style_layers)
    if accel.channels_last:
        net = net.to(memory_format=torch.channels_last)
    seen = []
    for module in net.body:
        if isinstance(module, torch.nn.Conv2d):
            module.register_forward_hook(lambda m, i, out: seen.append(
                (out.is_contiguous(memory_format=torch.channels_last), out.dtype)))
    content = to_tensor(images.resize_longest(images.load_image(CONTENT), P.size), CPU)
    objective = Objective(P, net, content, _style_tensors([images.load_image(STYLE)], P.size, P, CPU), accel)
    # Away from the content image, so the content term and its gradient are not zero.
    noise = torch.randn(content.shape, generator=torch.Generator().manual_seed(1))
    x = (content + 30 * noise).clamp(0, 255).requires_grad_(True)
    loss, parts = evaluator(objective, x, accel)()
    assert set(parts) == {"content", "style", "tv"}
    return float(loss.detach()), x.grad.clone(), seen


@pytest.fixture(scope="module")
def plain() -> tuple[float, torch.Tensor, list]:
    return loss_and_gradient(Accel())


def test_channels_last_computes_the_same_loss_and_gradient(plain):
    loss, grad, seen = loss_and_gradient(Accel(channels_last=True))
    assert all(nhwc for nhwc, _ in seen) and not any(nhwc for nhwc, _ in plain[2])
    assert loss == pytest.approx(plain[0], rel=1e-5)
    assert torch.allclose(grad, plain[1], atol=1e-4 * float(plain[1].abs().max()))


def test_bf16_network_stays_close_to_float32(plain):
    # bfloat16 keeps 8 bits of mantissa: the loss moves by about a percent, the gradient's
    # direction barely (the Grams and losses themselves are float32).
    loss, grad, seen = loss_and_gradient(Accel(bf16=True))
    assert {dtype for _, dtype in seen} == {torch.bfloat16} and {dtype for _, dtype in plain[2]} == {torch.float32}
    assert loss != plain[0]
    assert loss == pytest.approx(plain[0], rel=0.03)
    cosine = float(torch.nn.functional.cosine_similarity(grad.flatten(), plain[1].flatten(), dim=0))
    assert cosine > 0.99, cosine  # measured: loss -0.8 %, cosine 0.9988


def test_compiled_objective_computes_the_same_loss_and_gradient(plain):
    # About a minute of compiling on two CPU cores: the price of knowing that torch.compile traces
    # this objective (a custom autograd Function, dict outputs) before a GPU ever runs it.
    loss, grad, _ = loss_and_gradient(Accel(compile=True))
    assert loss == pytest.approx(plain[0], rel=1e-5)
    assert torch.allclose(grad, plain[1], atol=1e-4 * float(plain[1].abs().max()))


def test_run_uses_the_accel_it_is_given(monkeypatch):
    given = []

    def spy(objective, x, accel):
        given.append(accel)
        return evaluator(objective, x, accel)

    monkeypatch.setattr("engine.transfer.evaluator", spy)
    plain, nhwc = run(P), run(P, accel=Accel(channels_last=True))
    assert given == [Accel(), Accel(channels_last=True)]
    difference = torch.tensor(list(plain.image.tobytes()), dtype=torch.float) - \
        torch.tensor(list(nhwc.image.tobytes()), dtype=torch.float)
    assert float(difference.abs().mean()) < 0.5  # same steps, up to float rounding


def test_cuda_graphs_are_refused_without_cuda():
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device"):
        run(P, accel=Accel(cuda_graph=True))
    assert "exclusive" in Accel(compile=True, cuda_graph=True).problem(torch.device("cuda"))
    assert Accel(channels_last=True, bf16=True, cuda_graph=True).problem(torch.device("cuda")) is None


def test_default_is_plain_until_something_is_measured_to_pay():
    assert default_accel(CPU) == Accel() and Accel().label() == "plain"
    assert Accel(channels_last=True, bf16=True).label() == "channels_last+bf16"
