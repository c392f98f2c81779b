"""engine.accel: every way of evaluating the objective computes the same loss and gradient.

The tests marked cuda run only where a GPU is (skipped in CI); bench/device.sh runs them first on a
lent GPU machine."""
from __future__ import annotations

import pytest
import torch

from engine import images
from engine.accel import ACCEL_ENV, Accel, default_accel, evaluator, precision, prepare, stepper
from engine.lbfgs import LBFGS
from engine.objective import Objective
from engine.params import Params
from engine.transfer import _style_tensors, run, to_tensor
from engine.vgg import FeatureNet, load_weights
from harness.paths import CONTENT, STYLE

CPU = torch.device("cpu")
CUDA = torch.device("cuda")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
P = Params(content=str(CONTENT), styles=(str(STYLE),), size=48, iterations=3, multiscale=False,
           device="cpu", seed=0)


def objective_and_start(accel: Accel, device: torch.device = CPU, mirrored: bool = False
                        ) -> tuple[Objective, torch.Tensor, list[tuple[bool, torch.dtype]]]:
    """P's objective as `accel` evaluates it, a point away from the content image (so the content
    term and its gradient are not zero), and a list that records the (channels-last, dtype) of
    every conv's output."""
    net = prepare(FeatureNet(load_weights("caffe", device), P.content_layers + P.style_layers, device=device), accel)
    seen = []
    for module in net.body:
        if isinstance(module, torch.nn.Conv2d):
            module.register_forward_hook(lambda m, i, out: seen.append(
                (out.is_contiguous(memory_format=torch.channels_last), out.dtype)))
    content = to_tensor(images.resize_longest(images.load_image(CONTENT), P.size), device)
    styles = _style_tensors([images.load_image(STYLE)], P.size, P, device)
    objective = Objective(P, net, content, styles, accel)
    noise = torch.randn(content.shape, generator=torch.Generator().manual_seed(1)).to(device)
    x = (content + 30 * noise).clamp(0, 255)
    return objective, (x.flip(-1) if mirrored else x).contiguous().requires_grad_(True), seen


def loss_and_gradient(accel: Accel, device: torch.device = CPU, evaluations: int = 1
                      ) -> tuple[float, torch.Tensor, list[tuple[bool, torch.dtype]], float]:
    """The loss and gradient at one point, the (channels-last, dtype) of every conv's output, and
    the first loss evaluated. With evaluations > 1 the point is first evaluated elsewhere (the
    image mirrored) and moved in place, as an optimizer moves it (a CUDA graph must follow)."""
    with precision(accel):
        objective, x, seen = objective_and_start(accel, device, mirrored=evaluations > 1)
        evaluate = evaluator(objective, x, accel)
        losses = []
        for i in range(evaluations):
            if i == evaluations - 1 and evaluations > 1:
                with torch.no_grad():
                    x.copy_(x.flip(-1))
            loss, parts = evaluate()
            losses.append(float(loss.detach()))
    assert set(parts) == {"content", "style", "tv"}
    return losses[-1], x.grad.cpu().clone(), seen, losses[0]


@pytest.fixture(scope="module")
def plain() -> tuple[float, torch.Tensor, list, float]:
    return loss_and_gradient(Accel())


def test_channels_last_computes_the_same_loss_and_gradient(plain):
    loss, grad, seen, _ = loss_and_gradient(Accel(channels_last=True))
    assert all(nhwc for nhwc, _ in seen) and not any(nhwc for nhwc, _ in plain[2])
    assert loss == pytest.approx(plain[0], rel=1e-5)
    assert torch.allclose(grad, plain[1], atol=1e-4 * float(plain[1].abs().max()))


def test_bf16_network_stays_close_to_float32(plain):
    # bfloat16 keeps 8 bits of mantissa: the loss moves by about a percent, the gradient's
    # direction barely (the Grams and losses themselves are float32).
    loss, grad, seen, _ = loss_and_gradient(Accel(bf16=True))
    assert {dtype for _, dtype in seen} == {torch.bfloat16} and {dtype for _, dtype in plain[2]} == {torch.float32}
    assert loss != plain[0]
    assert loss == pytest.approx(plain[0], rel=0.03)
    cosine = float(torch.nn.functional.cosine_similarity(grad.flatten(), plain[1].flatten(), dim=0))
    assert cosine > 0.99, cosine  # measured: loss -0.8 %, cosine 0.9988


@pytest.mark.slow
def test_compiled_objective_computes_the_same_loss_and_gradient(plain):
    # About a minute of compiling on two CPU cores: the price of knowing that torch.compile traces
    # this objective (a custom autograd Function, dict outputs) before a GPU ever runs it.
    loss, grad, _, _ = loss_and_gradient(Accel(compile=True))
    assert loss == pytest.approx(plain[0], rel=1e-5)
    assert torch.allclose(grad, plain[1], atol=1e-4 * float(plain[1].abs().max()))


def test_run_uses_the_accel_it_is_given(monkeypatch):
    given = []

    def spy(objective, x, accel):
        given.append(accel)
        return evaluator(objective, x, accel)

    monkeypatch.setattr("engine.transfer.evaluator", spy)
    plain, nhwc = run(P, accel=Accel()), run(P, accel=Accel(channels_last=True))
    assert given == [Accel(), Accel(channels_last=True)]
    # How it was evaluated is recorded with the result.
    assert (plain.device, plain.evaluation, nhwc.device, nhwc.evaluation) == ("cpu", "", "cpu", "channels_last")
    difference = torch.tensor(list(plain.image.tobytes()), dtype=torch.float) - \
        torch.tensor(list(nhwc.image.tobytes()), dtype=torch.float)
    assert float(difference.abs().mean()) < 0.5  # same steps, up to float rounding


def test_cuda_graphs_are_refused_without_cuda():
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device"):
        run(P, accel=Accel(cuda_graph=True))
    assert "exclusive" in Accel(compile=True, cuda_graph=True).problem(torch.device("cuda"))
    assert "add cuda_graph" in Accel(graph_step=True).problem(torch.device("cuda"))
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device"):
        run(P, accel=Accel(cuda_graph=True, graph_step=True))
    assert Accel(channels_last=True, bf16=True, cuda_graph=True).problem(torch.device("cuda")) is None


def test_defaults_are_what_was_measured_fastest(monkeypatch):
    monkeypatch.delenv(ACCEL_ENV, raising=False)
    assert default_accel(CPU) == Accel(winograd=True) and Accel().label() == "plain"
    assert default_accel(CUDA) == Accel(channels_last=True, bf16=True, cuda_graph=True)
    assert Accel(channels_last=True, bf16=True).label() == "channels_last+bf16"


def test_studio_accel_overrides_the_default(monkeypatch):
    monkeypatch.setenv(ACCEL_ENV, "cuda_graph+channels_last")
    assert default_accel(CPU) == Accel(channels_last=True, cuda_graph=True)
    assert Accel.parse(Accel(bf16=True, fp32=True).label()) == Accel(bf16=True, fp32=True)
    assert Accel.parse("plain") == Accel()
    with pytest.raises(ValueError, match="unknown accel fast"):
        Accel.parse("channels_last+fast")
    monkeypatch.setenv(ACCEL_ENV, "fp32")
    with pytest.raises(ValueError, match="TF32 exists only on CUDA"):
        run(P)  # a variant the device cannot do is refused, not silently dropped


@pytest.fixture(scope="module")
def cuda_plain() -> tuple[float, torch.Tensor, list, float]:
    return loss_and_gradient(Accel(), CUDA)


def close(found: tuple, expected: tuple, rel: float, min_cosine: float) -> None:
    assert found[0] == pytest.approx(expected[0], rel=rel)
    cosine = float(torch.nn.functional.cosine_similarity(found[1].flatten(), expected[1].flatten(), dim=0))
    assert cosine > min_cosine, cosine


@needs_cuda
@pytest.mark.parametrize("accel", [Accel(cuda_graph=True), Accel(channels_last=True, cuda_graph=True)],
                         ids=Accel.label)
def test_cuda_graph_replays_follow_the_image_as_it_moves(cuda_plain, accel):
    # Captured at one point, replayed at another written into the same tensor: the replay must
    # give the eager loss and gradient at the new point, not the captured one.
    found = loss_and_gradient(accel, CUDA, evaluations=3)
    # 1e-3: channels-last makes cuDNN pick other TF32 kernels (seen on an H100: 1.8e-4 apart).
    close(found, cuda_plain, rel=1e-3, min_cosine=0.999)
    assert found[3] != pytest.approx(cuda_plain[0], rel=1e-2)  # the mirrored start really differs (2.7 %)


@needs_cuda
@pytest.mark.parametrize("accel", [Accel(channels_last=True), Accel(fp32=True), Accel(bf16=True),
                                   Accel(channels_last=True, bf16=True, cuda_graph=True)], ids=Accel.label)
def test_cuda_variants_stay_close_to_plain(cuda_plain, accel):
    exact = not accel.bf16
    close(loss_and_gradient(accel, CUDA, evaluations=2), cuda_plain, rel=1e-3 if exact else 0.03,
          min_cosine=0.999 if exact else 0.99)


def test_without_graph_step_a_step_is_taken_as_given():
    def step() -> None:
        pass

    assert stepper(step, Accel(channels_last=True, bf16=True, cuda_graph=True)) is step


CUDA_DEFAULT = Accel(channels_last=True, bf16=True, cuda_graph=True)
GRAPH_STEP = Accel(channels_last=True, bf16=True, cuda_graph=True, graph_step=True)


@needs_cuda
@pytest.mark.parametrize("accel", [Accel(cuda_graph=True), CUDA_DEFAULT, Accel(cuda_graph=True, graph_step=True),
                                   GRAPH_STEP], ids=Accel.label)
def test_whole_runs_on_cuda_descend_as_far_as_plain(accel):
    # Multi-scale: a graph is captured per scale; L-BFGS moves the image in place between replays
    # (under graph_step the replay itself takes the step).
    p = P.with_changes(device="cuda", size=96, iterations=12, multiscale=True)
    plain, fast = run(p, accel=Accel()), run(p, accel=accel)
    # One-sided: over 36 steps L-BFGS turns rounding into another path (on an H100 the bfloat16
    # run ended 14 % lower than plain). A stale replay would not descend at all.
    assert fast.losses["total"] <= plain.losses["total"] * 1.05
    assert fast.timings["optimize"] > 0 and fast.device.startswith("cuda")


@needs_cuda
@pytest.mark.parametrize("accel", [None, GRAPH_STEP], ids=["default", "graph_step"])
def test_adam_runs_with_the_cuda_default(accel):
    # Adam changes x in place as L-BFGS does, so the graph's replays must follow it too; under
    # graph_step its own update is in the graph (capturable=True).
    p = P.with_changes(device="cuda", size=96, iterations=30, multiscale=False, optimizer="adam")
    plain, fast = run(p, accel=Accel()), run(p, accel=accel)
    assert (fast.device, fast.evaluation) == ("cuda", (accel or default_accel(CUDA)).label())
    assert fast.losses["total"] <= plain.losses["total"] * 1.05


@needs_cuda
@pytest.mark.parametrize("accel", [CUDA_DEFAULT, GRAPH_STEP], ids=Accel.label)
def test_lbfgs_steps_with_the_cuda_default_wait_for_nothing(accel):
    # tests/test_lbfgs.py checks that engine.lbfgs reads no value back in Python; this checks that
    # none of its operators (nor a graph replay) synchronises with the device inside, so the host
    # queues step after step. The steps up to the capture may wait (graph_step: after its
    # eager warm-up steps).
    objective, x, _ = objective_and_start(accel, CUDA)
    evaluate = evaluator(objective, x, accel)
    optimizer = LBFGS(x, bounds=(0.0, 255.0))
    latest: dict[str, torch.Tensor] = {}

    def closure() -> torch.Tensor:
        latest["loss"] = evaluate()[0]
        return latest["loss"]

    step = stepper(lambda: optimizer.step(closure), accel)
    for _ in range(4):  # the graph_step warm-up, then its capture and first replay
        step()
    first = float(latest["loss"].detach())
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(5):
            step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert float(latest["loss"].detach()) < first


@needs_cuda
def test_progress_read_a_step_late_on_cuda_is_each_steps_own():
    # On CUDA the losses travel to pinned memory behind the step and are read one step later: read
    # before the copy lands, they would be another step's or garbage. Against the same run with
    # progress read at once (the loss falls by far more than 1e-3 per step here).
    p = P.with_changes(device="cuda", size=96, iterations=10, multiscale=False)
    late: list[dict[str, float]] = []
    run(p, on_progress=lambda pr: late.append(pr.losses))
    with pytest.MonkeyPatch.context() as m:
        m.setattr("engine.transfer.progress_lag", lambda device: 0)
        at_once: list[dict[str, float]] = []
        run(p, on_progress=lambda pr: at_once.append(pr.losses))
    assert len(late) == len(at_once) == 10
    for a, b in zip(late, at_once):
        assert a == pytest.approx(b, rel=1e-3)
