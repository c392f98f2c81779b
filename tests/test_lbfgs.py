"""engine.lbfgs on problems whose answers are known, and against torch's L-BFGS on the real loss."""
from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode

from engine import images
from engine.lbfgs import LBFGS
from engine.objective import Objective
from engine.params import Params
from engine.transfer import _style_tensors, to_tensor
from engine.vgg import FeatureNet, load_weights
from harness.paths import CONTENT, STYLE


def quadratic(n: int = 50, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A well-conditioned positive definite A and the minimiser of ½xᵀAx − bᵀx (A·x = b)."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    a = q @ torch.diag(torch.linspace(1.0, 20.0, n, dtype=torch.float64)) @ q.T
    solution = torch.randn(n, generator=g, dtype=torch.float64) * 3
    return a, solution


class Quadratic:
    """½xᵀAx − bᵀx as a closure over x, counting its evaluations."""

    def __init__(self, a: torch.Tensor, solution: torch.Tensor, x: torch.Tensor):
        self.a, self.b, self.x, self.calls = a, a @ solution, x, 0

    def __call__(self) -> torch.Tensor:
        self.x.grad = None
        self.calls += 1
        loss = 0.5 * self.x @ self.a @ self.x - self.b @ self.x
        loss.backward()
        return loss


def test_finds_the_minimum_of_a_quadratic_with_one_evaluation_per_step():
    a, solution = quadratic()
    x = torch.zeros_like(solution, requires_grad=True)
    f, opt = Quadratic(a, solution, x), LBFGS(x)
    losses = [float(opt.step(f).detach()) for _ in range(60)]
    assert f.calls == 60
    assert torch.allclose(x.detach(), solution, atol=1e-6), (x - solution).abs().max()
    assert losses[-1] <= losses[10] <= losses[0]


def test_first_step_is_first_step_long_and_the_radius_at_most_doubles():
    a, solution = quadratic(seed=1)
    x = torch.zeros_like(solution, requires_grad=True)
    f, opt = Quadratic(a, solution, x), LBFGS(x, first_step=0.25)
    moves = []
    for _ in range(8):
        before = x.detach().clone()
        opt.step(f)
        moves.append(float((x.detach() - before).abs().max()))
    assert abs(moves[0] - 0.25) < 1e-12, moves
    assert all(m <= 0.25 * 2**k + 1e-12 for k, m in enumerate(moves)), moves
    assert moves[2] > 0.25, moves  # it did grow while the limit held the steps back


def test_an_uphill_step_is_undone_and_retried_shorter():
    a, solution = quadratic(seed=2)
    x = torch.zeros_like(solution, requires_grad=True)
    f, opt = Quadratic(a, solution, x), LBFGS(x, first_step=1000.0)  # far past the minimum
    start_loss = float(opt.step(f).detach())
    first_step = x.detach().clone()
    overshoot_loss = float(opt.step(f).detach())
    assert overshoot_loss > start_loss
    retry = x.detach()  # undone to 0, then a step of at most a quarter of the first
    assert float(retry.abs().max()) <= 1000.0 / 4 + 1e-9
    assert not torch.allclose(retry, first_step)
    assert float(opt.step(f).detach()) < start_loss


def test_bounds_hold_and_the_box_constrained_minimum_is_found():
    target = torch.tensor([-50.0, 10.0, 300.0, 128.0, 255.0, 0.0], dtype=torch.float64)
    x = torch.full_like(target, 100.0, requires_grad=True)
    opt = LBFGS(x, bounds=(0.0, 255.0))

    def closure() -> torch.Tensor:
        x.grad = None
        loss = ((x - target) ** 2 * torch.arange(1, 7)).sum()
        loss.backward()
        return loss

    for _ in range(40):
        opt.step(closure)
        assert 0.0 <= float(x.detach().min()) and float(x.detach().max()) <= 255.0
    assert torch.allclose(x.detach(), target.clamp(0, 255), atol=1e-6), x


def test_history_is_a_ring_of_the_newest_pairs():
    a, solution = quadratic(seed=2)
    x = torch.zeros_like(solution, requires_grad=True)
    f, opt = Quadratic(a, solution, x), LBFGS(x, history=3)
    for _ in range(8):
        opt.step(f)
    assert opt.count == 7  # a pair per step after the first; all have positive curvature
    assert opt._oldest_first().tolist() == [1, 2, 0]  # pairs 5, 6, 7 sit in slots 1, 2, 0
    steps, changes = opt.pairs[:3], opt.pairs[3:]
    assert torch.allclose(changes[0], a @ steps[0])  # on a quadratic, y = A·s exactly
    # The small matrices are kept up to date as pairs replace each other.
    assert torch.allclose(opt.sy, steps @ changes.T) and torch.allclose(opt.yy, changes @ changes.T)


class HostReads(TorchFunctionMode):
    """Records each call that copies a tensor's value to the host: on a GPU, a wait for the device."""

    READS = {"item", "tolist", "__bool__", "__float__", "__int__", "__index__", "cpu", "numpy"}

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in self.READS:
            self.seen.append(func.__name__)
        return func(*args, **(kwargs or {}))


def test_a_step_reads_nothing_back():
    # Every branch taken: a first steepest step far past the minimum (undone), pairs filling and
    # wrapping the ring, the box binding. On a GPU the host then never waits inside a step.
    a, solution = quadratic(seed=4)
    x = torch.zeros_like(solution, requires_grad=True)
    f, opt = Quadratic(a, solution - 2, x), LBFGS(x, history=3, first_step=1000.0, bounds=(0.0, 1e9))
    with HostReads() as reads:
        losses = [opt.step(f).detach() for _ in range(12)]
    assert reads.seen == []
    assert losses[1] > losses[0] > losses[-1] and opt.count == 11 and float(x.detach().min()) == 0.0


class Calls(TorchFunctionMode):
    """Records the name of every torch operation called."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.seen.append(getattr(func, "__name__", repr(func)))
        return func(*args, **(kwargs or {}))


def test_every_step_runs_the_same_operations_on_the_same_state():
    # What a CUDA graph of one step needs (engine.accel's graph_step): the graph replays the
    # operations it captured on the tensors it captured. A first step with operations of its own,
    # or state replaced by new tensors instead of updated in place, would make replays go wrong.
    a, solution = quadratic(seed=5)
    x = torch.zeros_like(solution, requires_grad=True)
    f, opt = Quadratic(a, solution - 2, x), LBFGS(x, history=3, first_step=1000.0, bounds=(0.0, 1e9))

    def state() -> dict[str, int]:
        return {name: value.data_ptr() for name, value in vars(opt).items() if isinstance(value, torch.Tensor)}

    before, sequences, losses = state(), [], []
    for _ in range(8):  # the first step, an undone one, the ring filling and wrapping
        with Calls() as calls:
            loss = opt.step(f)
        sequences.append(calls.seen)
        losses.append(float(loss.detach()))
    assert all(seq == sequences[0] for seq in sequences), "a step ran operations of its own"
    assert state() == before and len(before) >= 8
    assert losses[1] > losses[0] > losses[-1] and opt.count == 7


def two_loop(pairs: list[tuple[torch.Tensor, torch.Tensor]], grad: torch.Tensor) -> torch.Tensor:
    """-H·grad by the textbook two-loop recursion (Nocedal and Wright, algorithm 7.4), pairs oldest first."""
    q, alphas = grad.clone(), []
    for s, y in reversed(pairs):
        alphas.append((s @ q) / (s @ y))
        q -= alphas[-1] * y
    s, y = pairs[-1]
    q *= (s @ y) / (y @ y)
    for (s, y), alpha in zip(pairs, reversed(alphas)):
        q += (alpha - (y @ q) / (s @ y)) * s
    return -q


def test_the_compact_direction_is_the_two_loop_direction():
    g = torch.Generator().manual_seed(3)
    n, history = 40, 5
    a, _ = quadratic(n, seed=3)
    opt = LBFGS(torch.zeros(n, dtype=torch.float64), history=history)
    pairs = []
    for count in range(1, 13):  # past a full ring, twice
        s = torch.randn(n, generator=g, dtype=torch.float64)
        y = a @ s + 0.1 * torch.randn(n, generator=g, dtype=torch.float64)  # curvature, not exactly A
        opt._remember(s, y, s @ y)
        pairs = (pairs + [(s, y)])[-history:]
        grad = torch.randn(n, generator=g, dtype=torch.float64)
        expected = two_loop(pairs, grad)
        assert torch.allclose(opt._direction(grad), expected, rtol=1e-9, atol=1e-9 * float(expected.abs().max())), count


def test_the_limited_steps_beat_torch_lbfgs_early_on_the_real_loss():
    """The reason this module exists: torch's second step throws the image far away."""
    size = 128  # at 64 px torch's second step happens to land well
    p = Params(content=str(CONTENT), styles=(str(STYLE),), size=size, device="cpu")
    device = torch.device("cpu")
    net = FeatureNet(load_weights("caffe", device), p.content_layers + p.style_layers)
    content = to_tensor(images.resize_longest(images.load_image(CONTENT), size), device)
    objective = Objective(p, net, content, _style_tensors([images.load_image(STYLE)], size, p, device))

    def losses_after(make, steps: int = 10) -> list[float]:
        x = content.clone().contiguous().requires_grad_(True)
        opt = make(x)

        def closure() -> torch.Tensor:
            x.grad = None
            loss, _ = objective(x)
            loss.backward()
            return loss

        return [float(opt.step(closure).detach()) for _ in range(steps)]

    ours = losses_after(LBFGS)
    theirs = losses_after(lambda x: torch.optim.LBFGS([x], lr=1.0, max_iter=1, history_size=100,
                                                      tolerance_grad=-1.0, tolerance_change=-1.0))
    assert ours[0] == theirs[0]  # same start, same objective
    assert max(ours) <= ours[0] * 1.5, ours  # no blow-up
    assert max(theirs) > theirs[0] * 100, theirs  # what happens without the cap
    assert ours[-1] < theirs[-1] / 2, (ours, theirs)
