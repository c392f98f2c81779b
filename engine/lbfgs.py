"""L-BFGS for one image: one loss evaluation per step, with a trust radius on the pixel change.

torch.optim.LBFGS with max_iter=1 (what neural-style and pastiche use) takes a tiny first step and
then trusts the curvature it measured along it. From the content image at 128 px that second step
is huge: the loss jumps from 2e8 to 1.5e14, and the next ten iterations only climb back to where
the run began, at every scale of a multi-scale run. Here each step's largest pixel change is
limited to a radius that grows while steps go downhill and shrinks when one goes uphill (that
step is undone, at no extra evaluation: the point it started from and its gradient are kept).
At 128 px the loss after 10 iterations is 2e7 instead of torch's 1.6e8, and after 80 it is a
little lower than torch's, from the content image and from noise. A line search would guard the
same way but costs extra evaluations, and torch's strong-Wolfe search stalls on that huge step.

History is kept in two preallocated ring buffers. Twenty pairs reach the same loss as a hundred
here (within 1 % over 300 iterations), at a fifth of the memory and of the two-loop's time, which
at 256 px on two CPU cores was ~7 % of an iteration with a hundred.
"""
from __future__ import annotations

from typing import Callable

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
    """

    def __init__(self, x: torch.Tensor, history: int = LBFGS_HISTORY, first_step: float = FIRST_STEP,
                 bounds: tuple[float, float] | None = None):
        self.x, self.radius, self.bounds = x, first_step, bounds
        n = x.numel()
        self.s = x.new_zeros(history, n)
        self.y = x.new_zeros(history, n)
        self.rho = [0.0] * history
        self.count = 0  # pairs stored so far; the newest is at (count - 1) % history
        # (loss, gradient, step) of the last evaluated point and the step taken from it
        self.prev: tuple[float, torch.Tensor, torch.Tensor] | None = None

    def _newest_first(self) -> list[int]:
        m = self.s.shape[0]
        return [(self.count - 1 - k) % m for k in range(min(self.count, m))]

    def _remember(self, step: torch.Tensor, grad_change: torch.Tensor) -> None:
        sy = float(step @ grad_change)
        # Skip pairs without positive curvature: they would make the inverse Hessian indefinite.
        if sy <= 1e-10:
            return
        slot = self.count % self.s.shape[0]
        self.s[slot].copy_(step)
        self.y[slot].copy_(grad_change)
        self.rho[slot] = 1.0 / sy
        self.count += 1

    def _direction(self, grad: torch.Tensor) -> torch.Tensor:
        """-H·grad by the two-loop recursion; steepest descent while there is no history."""
        order = self._newest_first()
        if not order:
            return grad.neg()
        q = grad.clone()
        alphas = []
        for i in order:
            a = self.rho[i] * (self.s[i] @ q)
            q.sub_(self.y[i] * a)
            alphas.append(a)
        newest = order[0]
        y_newest = self.y[newest]
        q.mul_(1.0 / (self.rho[newest] * (y_newest @ y_newest)))
        for i, a in zip(reversed(order), reversed(alphas)):
            b = self.rho[i] * (self.y[i] @ q)
            q.add_(self.s[i] * (a - b))
        return q.neg_()

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
        value = float(loss.detach())
        grad = self.x.grad.detach().reshape(-1).clone()
        pinned = self._pinned(grad)
        if pinned is not None:
            grad.masked_fill_(pinned, 0.0)
        if self.prev is not None:
            prev_value, prev_grad, prev_step = self.prev
            self._remember(prev_step, grad - prev_grad)
            moved = float(prev_step.abs().max())
            if not value <= prev_value:  # worse, or NaN
                # Go back to where that step began and try a shorter one from there; the pair just
                # remembered still describes the curvature, so the next direction is better too.
                self.x.sub_(prev_step.view_as(self.x))
                value, grad = prev_value, prev_grad
                self.radius = moved * SHRINK
            elif moved >= self.radius * 0.999:
                self.radius *= GROW  # the limit held this step back and it paid: allow longer
        direction = self._direction(grad)
        if pinned is not None:
            direction.masked_fill_(pinned, 0.0)
        scale = self.radius / max(float(direction.abs().max()), 1e-12)
        # Steepest descent has no natural length, so it always gets the radius; a quasi-Newton
        # step is only ever shortened.
        step = direction.mul_(scale if self.count == 0 else min(1.0, scale))
        if self.bounds is not None:
            # Projected onto the box; the pair remembered next is the step actually taken.
            flat = self.x.view(-1)
            step = (flat + step).clamp_(*self.bounds).sub_(flat)
        self.x.add_(step.view_as(self.x))
        self.prev = (value, grad, step)
        return loss
