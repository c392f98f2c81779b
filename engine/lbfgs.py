"""L-BFGS for one image: one loss evaluation per step, with a trust radius on the pixel change.

torch.optim.LBFGS with max_iter=1 (what neural-style and pastiche use) takes a tiny first step and
then trusts the curvature it measured along it. From the content image that second step is huge:
the loss jumps by orders of magnitude, and the next iterations only climb back to where the run
began, at every scale of a multi-scale run. Here each step's largest pixel change is limited to
a radius that grows while steps go downhill and shrinks when one goes uphill (that step is
undone, at no extra evaluation: the point it started from and its gradient are kept). Its loss
is far lower than torch's over the first iterations and as low later, from the content image
and from noise. A line search would guard the same way but costs extra evaluations, and torch's
strong-Wolfe search stalls on that huge step. The losses, step by step: docs/performance.md,
"What changed", item 1.

History is kept in one preallocated ring buffer of LBFGS_HISTORY pairs, which reach about the
loss a hundred would, at a fraction of the memory and of the optimizer's time (the same item).

The direction comes from the compact form of the inverse Hessian (Byrd, Nocedal and Schnabel,
1994) rather than the two-loop recursion: the same vector, but from two matrix-vector products
over the stored pairs and a few m×m operations, instead of four vector operations per pair, so
a step makes far fewer operator calls (counted in docs/performance.md, "Before the device: the
compact L-BFGS"). It reads nothing back from the device either (see LBFGS): on a GPU each call
is a kernel launch and each read a wait.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from engine.params import LBFGS_HISTORY

# In the image's 0..255 units: the first step moves the most-changed pixel by FIRST_STEP; later
# steps are limited to a radius that grows by GROW while the limit binds and steps go downhill,
# and shrinks to SHRINK of a step that went uphill (which is undone).
FIRST_STEP = 4.0
GROW = 2.0
SHRINK = 0.25


class LBFGS:
    """Minimises closure() over the tensor `x` in place; step(closure) evaluates it exactly once.

    As with torch.optim.LBFGS(max_iter=1), step() returns the closure's loss at x as it found it
    (after an uphill step, that higher loss, though the step then starts from the point before).
    The closure must zero x.grad, compute the loss, call backward and return it.

    All of its state lives on x's device and every decision (undo an uphill step, grow or shrink
    the radius, skip a pair without positive curvature) is taken there with torch.where: a step
    reads nothing back, so on a GPU the host queues the next evaluation while this one runs. The
    state's tensors are updated in place, never replaced, and every step runs the same operations,
    the first included: a CUDA graph can capture one step and replay it (engine.accel's graph_step).
    """

    def __init__(self, x: torch.Tensor, history: int = LBFGS_HISTORY, first_step: float = FIRST_STEP,
                 bounds: tuple[float, float] | None = None, history_device: torch.device | None = None):
        """`history_device`: where the pairs are kept, x's device by default; the host for a print
        on a GPU whose memory they would not fit (each step then copies four image-sized vectors
        across, and reads back: no CUDA graph can capture it)."""
        self.x, self.bounds = x, bounds
        m = self.m = history
        # Rows 0..m-1 hold the steps s, rows m..2m-1 the gradient changes y, by ring slot; the two
        # rows after them take the pairs that are skipped.
        self._rows = torch.zeros(2 * m + 2, x.numel(), dtype=x.dtype, device=history_device or x.device)
        self.pairs = self._rows[: 2 * m]
        # sᵢᵀyⱼ and yᵢᵀyⱼ by slot, in float64: the compact form solves with the first.
        self.sy = torch.zeros(m, m, dtype=torch.float64, device=x.device)
        self.yy = torch.zeros(m, m, dtype=torch.float64, device=x.device)
        self.radius = torch.tensor(first_step, dtype=torch.float64, device=x.device)
        self.count = torch.zeros((), dtype=torch.long, device=x.device)  # pairs stored so far
        self._positions = torch.arange(m, device=x.device)
        self._identity = torch.eye(m, dtype=torch.float64, device=x.device)
        # The last evaluated point's loss and gradient and the step taken from it. Before the first
        # step they describe an infinitely high point with no step from it, so the first step
        # takes the same path as every other: nothing to remember or undo, the radius unchanged.
        self.prev_value = torch.tensor(float("inf"), dtype=torch.float64, device=x.device)
        self.prev_grad = x.new_zeros(x.numel())
        self.prev_step = x.new_zeros(x.numel())

    def _kept(self, t: torch.Tensor) -> torch.Tensor:
        """`t` where the history is kept (itself, unless that is the host and x is on a GPU)."""
        return t.to(self._rows.device)

    def _oldest_first(self) -> torch.Tensor:
        """The ring's slots oldest first; while it is not full, the empty slots come last."""
        start = torch.where(self.count >= self.m, self.count % self.m, 0)
        return (self._positions + start) % self.m

    def _remember(self, step: torch.Tensor, grad_change: torch.Tensor, sy: torch.Tensor) -> None:
        # A pair without positive curvature would make the inverse Hessian indefinite: it goes to
        # the scratch rows instead of the ring, and the small matrices keep their values.
        m, keep = self.m, sy > 1e-10
        slot = (self.count % m).view(1)
        step, grad_change = self._kept(step), self._kept(grad_change)
        self._rows.index_copy_(0, self._kept(torch.where(keep, slot, 2 * m)), step.unsqueeze(0))
        self._rows.index_copy_(0, self._kept(torch.where(keep, slot + m, 2 * m + 1)), grad_change.unsqueeze(0))
        # The slot's row and column of both small matrices. Matrix-vector products, not one
        # matrix product: on CUDA matrix products may run in TF32 (engine.transfer.pick_device),
        # which these inner products cannot afford.
        products = torch.stack([self.pairs @ step, self.pairs @ grad_change], dim=1).to(self.x.device).double()
        sy, yy = self.sy.clone(), self.yy.clone()
        sy.index_copy_(1, slot, products[:m, 1:])
        sy.index_copy_(0, slot, products[m:, :1].t())
        yy.index_copy_(1, slot, products[m:, 1:])
        yy.index_copy_(0, slot, products[m:, 1:].t())
        self.sy.copy_(torch.where(keep, sy, self.sy))
        self.yy.copy_(torch.where(keep, yy, self.yy))
        self.count += keep.long()

    def _direction(self, grad: torch.Tensor) -> torch.Tensor:
        """-H·grad, H the L-BFGS inverse Hessian in compact form; steepest descent while there is
        no history. With S, Y the pairs oldest first, R the upper triangle of SᵀY, D its diagonal
        and γ = sᵀy/yᵀy of the newest pair:
        H·g = γg + S·w − γY·u, where R·u = Sᵀg and Rᵀ·w = (D + γYᵀY)·u − γYᵀg.
        Empty slots hold zeros and come last in the order: an identity block in R keeps the
        solves regular and gives those slots zero coefficients."""
        m, order = self.m, self._oldest_first()
        projected = (self.pairs @ self._kept(grad)).to(grad.device).double()
        s_g, y_g = projected[:m][order], projected[m:][order]
        sy, yy = self.sy[order][:, order], self.yy[order][:, order]
        filled = self._positions < self.count
        r = torch.where(filled.unsqueeze(0) & filled.unsqueeze(1), torch.triu(sy), self._identity)
        newest = (self.count.clamp(1, m) - 1).view(1)
        gamma = (sy.index_select(0, newest).index_select(1, newest) /
                 yy.index_select(0, newest).index_select(1, newest)).view(())
        # No pairs yet (0/0 above): γ = 1 and all-zero coefficients make H·g = g, steepest descent.
        gamma = torch.where(self.count > 0, gamma, 1.0)
        u = torch.linalg.solve_triangular(r, s_g.unsqueeze(1), upper=True)
        rhs = torch.diagonal(sy).unsqueeze(1) * u + gamma * (yy @ u) - gamma * y_g.unsqueeze(1)
        w = torch.linalg.solve_triangular(r.t(), rhs, upper=False)
        coefficients = torch.zeros(2 * m, dtype=torch.float64, device=grad.device)
        coefficients[order] = w.squeeze(1)
        coefficients[m + order] = -gamma * u.squeeze(1)
        hg = (self.pairs.t() @ self._kept(coefficients.to(grad.dtype))).to(grad.device)
        hg.addcmul_(grad, gamma.to(grad.dtype))
        return hg.neg_()

    def _pinned(self, grad: torch.Tensor) -> torch.Tensor | None:
        """Pixels at a bound whose gradient points out of the box. They are left out of the
        gradient and the step (an active set), or their pull would bend every other pixel's step."""
        if self.bounds is None:
            return None
        flat = self.x.detach().view(-1)
        low, high = self.bounds
        return ((flat <= low) & (grad > 0)) | ((flat >= high) & (grad < 0))

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor]) -> torch.Tensor:
        with torch.enable_grad():
            loss = closure()
        if self.x.grad is None:
            raise RuntimeError("L-BFGS's closure must leave the loss's gradient in x.grad (call backward)")
        # In place: at a print's size each image-sized vector is hundreds of MB (engine.memory).
        grad = self.x.grad.detach().reshape(-1)
        pinned = self._pinned(grad)
        if pinned is not None:
            grad.masked_fill_(pinned, 0.0)
        value = loss.detach().reshape(()).to(torch.float64)
        prev_value, prev_grad, prev_step = self.prev_value, self.prev_grad, self.prev_step
        grad_change = grad - prev_grad
        self._remember(prev_step, grad_change, prev_step @ grad_change)
        del grad_change
        moved = torch.linalg.vector_norm(prev_step, float("inf")).double()
        # Worse, or NaN: go back to where that step began and try a shorter one from there; the
        # pair just remembered still describes the curvature, so the next direction is better too.
        worse = ~(value <= prev_value)
        self.x.view(-1).addcmul_(prev_step, worse.to(prev_step.dtype), value=-1)
        value, grad = torch.where(worse, prev_value, value), torch.where(worse, prev_grad, grad)
        # Otherwise, if the limit held this step back and it paid, allow longer ones.
        self.radius.copy_(torch.where(worse, moved * SHRINK,
                                      torch.where(moved >= self.radius * 0.999, self.radius * GROW, self.radius)))
        direction = self._direction(grad)
        if pinned is not None:
            direction.masked_fill_(pinned, 0.0)
        # Steepest descent has no natural length, so it always gets the radius; a quasi-Newton
        # step is only ever shortened.
        scale = self.radius / torch.linalg.vector_norm(direction, float("inf")).clamp_min(1e-12)
        step = direction.mul_(torch.where(self.count > 0, scale.clamp_max(1.0), scale))
        if self.bounds is not None:
            # Projected onto the box; the pair remembered next is the step actually taken.
            flat = self.x.view(-1)
            step.add_(flat).clamp_(*self.bounds).sub_(flat)
        self.x.add_(step.view_as(self.x))
        self.prev_value.copy_(value)
        self.prev_grad.copy_(grad)
        self.prev_step.copy_(step)
        return loss
