"""How the loss and its gradient are evaluated on a device: plain PyTorch, or with one or more of
channels-last tensors, bfloat16 convolutions, full float32 (no TF32), Winograd convolutions (CPU),
torch.compile and a CUDA graph (of the loss and gradient, or of the whole optimisation step).

None of these changes the objective being optimised. bfloat16, fp32 and winograd change the
arithmetic (winograd within float32 rounding, as tests/test_winograd.py bounds it; with bfloat16
the Gram matrices and losses stay in float32; on CUDA the engine otherwise lets cuDNN and cuBLAS
use TF32 for the convolutions and Grams); the others change only how the same arithmetic is
scheduled. `python -m bench.accel` measures each on the device at hand; `default_accel` holds
what those measurements chose, and the environment variable STUDIO_ACCEL overrides it (a label
such as "plain" or "channels_last+cuda_graph").
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Protocol, TypeVar

import torch
from torch import nn

from engine import winograd

Parts = dict[str, torch.Tensor]
ACCEL_ENV = "STUDIO_ACCEL"


class LossFunction(Protocol):
    """What an Accel evaluates: the image to its loss and loss parts (engine.objective.Objective)."""

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, Parts]: ...


@dataclass(frozen=True)
class Accel:
    channels_last: bool = False  # NHWC activations and weights (tensor-core friendly on CUDA)
    bf16: bool = False  # the network under bfloat16 autocast
    fp32: bool = False  # full float32 on CUDA: TF32 off for convolutions and Grams
    winograd: bool = False  # the deep 3×3 convolutions by Winograd F(4×4, 3×3) (engine.winograd; CPU)
    compile: bool = False  # torch.compile the objective
    cuda_graph: bool = False  # capture loss + gradient once per scale, replay it every step
    graph_step: bool = False  # with cuda_graph: the optimizer's step captured in the same graph

    def label(self) -> str:
        on = [f.name for f in fields(self) if getattr(self, f.name)]
        return "+".join(on) if on else "plain"

    @classmethod
    def parse(cls, label: str) -> Accel:
        """The Accel whose label() is `label` (names in any order)."""
        names = {f.name for f in fields(cls)}
        on = [] if label.strip() == "plain" else [n.strip() for n in label.split("+")]
        unknown = [n for n in on if n not in names]
        if unknown:
            raise ValueError(f"unknown accel {', '.join(unknown)}: use plain or some of "
                             f"{', '.join(sorted(names))} joined by +")
        return cls(**{n: True for n in on})

    def problem(self, device: torch.device) -> str | None:
        """Why this cannot run on `device`, or None."""
        if self.cuda_graph and device.type != "cuda":
            return "CUDA graphs need a CUDA device"
        if self.graph_step and not self.cuda_graph:
            return "graph_step puts the optimizer's step into the loss's CUDA graph: add cuda_graph"
        if self.cuda_graph and self.compile:
            return "compile and cuda_graph are exclusive (torch.compile captures its own graphs)"
        if self.fp32 and device.type != "cuda":
            return "TF32 exists only on CUDA: elsewhere every variant is full float32"
        if self.fp32 and self.bf16:
            return "fp32 and bf16 are exclusive"
        if self.winograd and device.type != "cpu":
            return "Winograd convolutions are for the CPU: cuDNN chooses its own algorithms, Winograd among them"
        return None


def default_accel(device: torch.device) -> Accel:
    """STUDIO_ACCEL if set, else what `python -m bench.accel` measured fastest on the device type
    among the variants whose judged loss stays close to plain's: on CUDA channels-last bfloat16 convolutions in a CUDA graph; on
    the CPU Winograd convolutions for the deep layers (there channels_last, torch.compile and
    bfloat16 were all slower than plain). The measurements, and the machines they were taken on:
    docs/performance.md, "CUDA on one H100" and "Against the targets"."""
    if os.environ.get(ACCEL_ENV):
        return Accel.parse(os.environ[ACCEL_ENV])
    if device.type == "cuda":
        return Accel(channels_last=True, bf16=True, cuda_graph=True)
    return Accel(winograd=True)


@contextmanager
def precision(accel: Accel) -> Iterator[None]:
    """TF32 off while the block runs, when accel.fp32 (the flags are global to the process)."""
    if not accel.fp32:
        yield
        return
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


Net = TypeVar("Net", bound=nn.Module)


def prepare(net: Net, accel: Accel) -> Net:
    """The network as `accel` evaluates it (changed in place: net must not be shared with a run that
    evaluates it otherwise)."""
    if accel.winograd:
        winograd.adopt(net)
    return net.to(memory_format=torch.channels_last) if accel.channels_last else net


def network_input(x: torch.Tensor, accel: Accel) -> torch.Tensor:
    # The optimised image itself stays in the default layout: the optimizer views it as one vector.
    return x.contiguous(memory_format=torch.channels_last) if accel.channels_last else x


def autocast(device: torch.device, accel: Accel) -> torch.autocast:
    # No weight-cast cache: each weight is used once per forward, so it saves nothing, and a CUDA
    # graph would replay casts into cached tensors that are freed when the autocast region ends.
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=accel.bf16, cache_enabled=False)


Evaluate = Callable[[], tuple[torch.Tensor, Parts]]


def evaluator(objective: LossFunction, x: torch.Tensor, accel: Accel) -> Evaluate:
    """A function that returns (loss, parts) at the current x and leaves the gradient in x.grad.
    Under graph_step it runs eagerly: `stepper` captures it with the step around it."""
    if accel.cuda_graph and not accel.graph_step:
        return _GraphedStep(objective, x)
    fn = torch.compile(objective, dynamic=False) if accel.compile else objective

    def evaluate() -> tuple[torch.Tensor, Parts]:
        x.grad = None
        loss, parts = fn(x)
        loss.backward()
        return loss, parts

    return evaluate


class _GraphedStep:
    """Loss and gradient captured as one CUDA graph; each call replays it, with no kernel launches
    from Python. x must keep its storage (the optimizers change it in place) and x.grad is the
    graph's own output tensor, overwritten by every replay."""

    WARMUP = 3  # eager passes on a side stream first, as capture requires (cuDNN picks its kernels)

    def __init__(self, objective: LossFunction, x: torch.Tensor):
        self.objective, self.x = objective, x
        # The graph and its output tensors (loss, parts), once captured.
        self.captured: tuple[torch.cuda.CUDAGraph, torch.Tensor, Parts] | None = None

    def _capture(self) -> tuple[torch.cuda.CUDAGraph, torch.Tensor, Parts]:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(self.WARMUP):
                self.x.grad = None
                loss, _ = self.objective(self.x)
                loss.backward()
        torch.cuda.current_stream().wait_stream(stream)
        self.x.grad = None
        graph = torch.cuda.CUDAGraph()
        # Captured on the warm-up stream: cuBLAS and cuDNN set up per-stream state on first use,
        # which must not happen during capture.
        with torch.cuda.graph(graph, stream=stream):
            loss, parts = self.objective(self.x)
            loss.backward()
        return graph, loss, parts

    def __call__(self) -> tuple[torch.Tensor, Parts]:
        if self.captured is None:
            self.captured = self._capture()
        graph, loss, parts = self.captured
        graph.replay()
        return loss, parts


Step = Callable[[], None]


def stepper(step: Step, accel: Accel) -> Step:
    """One optimisation step as `accel` takes it: `step` itself, or under graph_step a CUDA graph
    of it (evaluation and optimizer update together), captured once and replayed."""
    return _GraphedIteration(step) if accel.graph_step else step


class _GraphedIteration:
    """A whole step (loss, gradient and the optimizer's update of x and of its own state) as one
    CUDA graph: the host launches one graph per iteration instead of each of the update's many
    small kernels (engine.lbfgs; counted in docs/performance.md). The step must keep all its state
    in tensors it updates in place (engine.lbfgs does; torch's Adam with capturable=True does).
    Its first WARMUP calls are real steps, run eagerly on the stream the graph is then captured
    on; each later call replays the capture."""

    WARMUP = 3

    def __init__(self, step: Step):
        self.step, self.calls = step, 0
        self.stream = torch.cuda.Stream()
        self.graph: torch.cuda.CUDAGraph | None = None

    def __call__(self) -> None:
        if self.calls < self.WARMUP:
            self.stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.stream):
                self.step()
            torch.cuda.current_stream().wait_stream(self.stream)
        else:
            if self.graph is None:
                # Capturing runs no kernel: the step it records is taken by the replay below.
                self.graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(self.graph, stream=self.stream):
                    self.step()
            self.graph.replay()
        self.calls += 1
