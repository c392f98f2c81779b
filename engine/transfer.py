"""Gatys et al. style transfer: optimise an image so its VGG19 features match the content
image's (conv4_2) and its Gram matrices match the style images' (conv1_1 .. conv5_1), coarse to
fine. The loss is engine/objective.py's, evaluated on the whole image or, where that would not
fit, tile by tile (engine/tiled.py).
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from engine import images, masks, memory, tiles
from engine.accel import Accel, LossFunction, default_accel, evaluator, precision, prepare, stepper
from engine.devices import gpu_device, gpu_index
from engine.gram import region_weights
from engine.lbfgs import LBFGS
from engine.objective import Objective, style_grams
from engine.params import MIN_SIZE, Params, ParamsError, validate
from engine.tiled import TiledObjective, free_bytes, memory_plans, tiled_grams, untiled
from engine.vgg import FeatureNet, Weights, load_weights


class Cancelled(Exception):
    """The caller asked to stop (should_cancel returned true)."""


class OutOfMemory(RuntimeError):
    """The device ran out of memory; the message suggests a smaller size."""


@dataclass
class Progress:
    iteration: int  # 1-based, counted over all scales
    total: int
    size: int
    losses: dict[str, float]
    elapsed: float
    preview: Image.Image | None = None
    # A tiled scale (engine/tiled.py) also reports each tile: `tile` of `tiles` done in the
    # iteration after `iteration` (which is in progress; losses are the last iteration's). An
    # iteration's own report has tile 0; tiles is 0 where the whole image is evaluated at once.
    tile: int = 0
    tiles: int = 0


@dataclass
class Result:
    image: Image.Image
    losses: dict[str, float]
    timings: dict[str, float]
    previews: list[tuple[int, Image.Image]] = field(default_factory=list)
    weights_name: str = ""
    weights_sha256: str = ""
    device: str = "cpu"
    evaluation: str = ""  # how the loss was evaluated, when not plain: "channels_last+bf16+cuda_graph"


ProgressFn = Callable[[Progress], None]


def device_name(choice: str) -> str:
    """The device a Params.device choice means here: "auto" is "cuda" when a GPU is usable;
    "cuda:N" is that GPU, when this machine has it."""
    if choice.startswith("cuda") or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ParamsError({"device": f"{choice} was asked for but no GPU is available here; use cpu or auto"})
        index, count = gpu_index(choice), torch.cuda.device_count()
        if index is not None and index >= count:
            raise ParamsError({"device": f"{choice} was asked for but this machine has "
                                         f"{count} GPU(s), {gpu_device(0)} to {gpu_device(count - 1)}"})
        return "cuda" if index is None else choice
    return "cpu"


def pick_device(choice: str) -> torch.device:
    name = device_name(choice)
    if name.startswith("cuda"):
        # One image size per scale, hundreds of identical steps: cuDNN's autotuning pays off, and
        # TF32 convolutions and Grams are ample for a loss that is only ever compared to itself
        # (L-BFGS keeps its inner products in float32: engine.lbfgs uses matrix-vector products).
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cuda.matmul.allow_tf32 = True
    return torch.device(name)


def to_tensor(img: Image.Image, device: torch.device) -> torch.Tensor:
    data = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
    return data.view(img.height, img.width, 3).permute(2, 0, 1).unsqueeze(0).to(device, torch.float32)


def to_image(x: torch.Tensor) -> Image.Image:
    arr = x.detach()[0].clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).cpu().contiguous()
    # Through numpy (torchvision's dependency): bytes(storage) would read it one Python call per
    # byte, which made every preview and result slow (docs/performance.md, "The quality race on CUDA").
    return Image.fromarray(arr.numpy(), "RGB")


def keep_colors(result: Image.Image, content: Image.Image) -> Image.Image:
    """Luminance from the result, chroma from the content (neural-style's -original_colors)."""
    y, _, _ = result.convert("YCbCr").split()
    _, cb, cr = content.resize(result.size, Image.Resampling.BICUBIC).convert("YCbCr").split()
    return Image.merge("YCbCr", (y, cb, cr)).convert("RGB")


def _load_inputs(p: Params) -> tuple[Image.Image, list[Image.Image]]:
    return images.load_image(p.content), [images.load_image(s) for s in p.styles]


def _style_side(p: Params, size: int, styles: list[Image.Image]) -> int:
    """The largest side any of the style images is made at `size` (Params.style_side)."""
    return max((p.style_side(size, max(s.size)) for s in styles), default=MIN_SIZE)


def _style_tensors(styles: list[Image.Image], size: int, p: Params, device: torch.device) -> list[torch.Tensor]:
    return [to_tensor(images.resize_longest(s, p.style_side(size, max(s.size))), device) for s in styles]


def _make_optimizer(p: Params, x: torch.Tensor, accel: Accel, plan: memory.Plan) -> torch.optim.Adam | LBFGS:
    if p.optimizer == "adam":
        # capturable: Adam's step count stays on the device, where a CUDA graph can update it
        return torch.optim.Adam([x], lr=p.learning_rate, capturable=accel.graph_step)
    return LBFGS(x, history=plan.history, bounds=(0.0, 255.0),
                 history_device=torch.device("cpu") if plan.history_on_host else None)


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e).lower() \
        or "can't allocate memory" in str(e).lower()


class Reuse:
    """What later runs with the same network and styles can take from earlier ones instead of
    computing again: the network prepared as `accel` evaluates it, and the style images' Grams at
    each style size. A clip's frames (engine/clip_transfer.py) share one. `built` counts the networks
    prepared, `computed` the times Grams were computed."""

    def __init__(self) -> None:
        self._nets: dict[tuple, FeatureNet] = {}
        self._grams: dict[tuple, list[dict[str, torch.Tensor]]] = {}
        self.built = 0
        self.computed = 0

    def network(self, p: Params, weights: Weights, device: torch.device, accel: Accel) -> FeatureNet:
        layers = tuple(p.content_layers) + tuple(p.style_layers)
        key = (weights.sha256, layers, p.pooling, str(device), accel)
        if key not in self._nets:
            # On the CPU most of this is engine.winograd transforming the deep kernels.
            self._nets[key] = prepare(FeatureNet(weights, layers, p.pooling, device), accel)
            self.built += 1
        return self._nets[key]

    def grams(self, p: Params, size: int, device: torch.device, accel: Accel, net: FeatureNet,
              styles: list[Image.Image], plan: memory.Plan | None = None) -> list[dict[str, torch.Tensor]]:
        """The style images' Grams at `size`; in `plan`'s tiles where it tiles (the same Grams)."""
        key = (p.styles, _style_side(p, size, styles), p.style_layers, p.pooling, p.weights, str(device), accel)
        if key not in self._grams:
            tensors = _style_tensors(styles, size, p, device)
            if plan is not None and plan.tiled:
                self._grams[key] = [tiled_grams(net, t, p.style_layers, untiled(accel),
                                                tiles.grid(t.shape[-1], t.shape[-2], plan.tile, plan.halo))
                                    for t in tensors]
            else:
                self._grams[key] = style_grams(p, net, tensors, accel)
            self.computed += 1
        return self._grams[key]


@dataclass
class FrameStart:
    """Where a clip's frame starts (the previous result warped by the input's motion, at the
    result's size) and where it must keep to it (a boolean mask; None: nowhere)."""

    image: Image.Image
    reliable: Any = None  # numpy (H, W) bool


def run(p: Params, on_progress: ProgressFn | None = None,
        should_cancel: Callable[[], bool] | None = None, accel: Accel | None = None,
        start: FrameStart | None = None, reuse: Reuse | None = None, memory_budget: int | None = None) -> Result:
    """Optimises the result image for `p`, coarse to fine when `p.multiscale`. `accel` picks how
    the loss is evaluated (engine.accel); by default, what was measured best on the device.
    `start`: a clip's later frame (engine/clip_transfer.py) starts there, single scale. `reuse`: the
    network and style Grams kept from earlier runs (a clip's frames), and for later ones.
    `memory_budget`: bytes the run may use ($STUDIO_MEMORY_BUDGET without it), within what the
    device has free; a scale that would not fit is evaluated in tiles (engine.memory.plan)."""
    validate(p)
    device = pick_device(p.device)
    accel = default_accel(device) if accel is None else accel
    if accel.problem(device):
        raise ValueError(f"accel {accel.label()}: {accel.problem(device)}")
    budget = memory.budget_from_env() if memory_budget is None else memory_budget
    available = memory.within_budget(free_bytes(device), budget)
    try:
        with precision(accel):
            return _run(p, device, accel, on_progress, should_cancel, start, reuse or Reuse(), available)
    except (Cancelled, images.ImageError):
        raise
    except (RuntimeError, MemoryError) as e:
        if _is_oom(e) or isinstance(e, MemoryError):
            if device.type == "cuda":
                torch.cuda.empty_cache()
            raise OutOfMemory(
                f"Out of memory at {p.size} px on {device.type}; try a smaller size "
                f"(e.g. {max(16, p.size // 2)} px) or fewer style layers.") from e
        raise


class LossReading:
    """The parts of one iteration's loss, on their way to the host. On CUDA the copy is queued
    behind the step without waiting for it; read() waits for that copy alone."""

    def __init__(self, parts: dict[str, torch.Tensor]):
        self.names = list(parts)
        stacked = torch.stack([v.detach() for v in parts.values()])  # one copy for all the parts
        self.values = stacked.to("cpu", non_blocking=True)  # into pinned memory, from CUDA
        self.copied: torch.cuda.Event | None = None
        if stacked.is_cuda:
            self.copied = torch.cuda.Event()
            self.copied.record()

    def read(self) -> dict[str, float]:
        if self.copied is not None:
            self.copied.synchronize()
        return dict(zip(self.names, self.values.tolist()))


@dataclass
class _Step:
    iteration: int
    size: int
    losses: LossReading
    preview: Image.Image | None


def progress_lag(device: torch.device) -> int:
    """How many steps behind the optimisation progress is reported. On CUDA, one: the host reads
    a step's losses after it has queued the next step, so the GPU goes from one to the next
    without waiting for the host (the L-BFGS step reads nothing back either). On the CPU nothing
    runs ahead of the host, and progress comes at once."""
    return 1 if device.type == "cuda" else 0


# How often, at most, should_cancel is asked within an iteration (on the CPU), in seconds.
ASK_WITHIN_ITERATION_S = 0.5


@contextlib.contextmanager
def asked_between_layers(net: FeatureNet, ask: Callable[[], None] | None, every: float) -> Iterator[None]:
    """Calls `ask` after each of the network's convolutions, forward and backward, at most every
    `every` seconds, while the block runs; `ask` raising stops the pass there."""
    if ask is None:
        yield
        return
    last = time.monotonic()

    def maybe(*_: Any) -> None:
        nonlocal last
        if time.monotonic() - last >= every:
            last = time.monotonic()
            ask()

    def after(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        maybe()
        if output.requires_grad:
            output.register_hook(maybe)  # it returns None: the gradient goes on unchanged

    handles = [m.register_forward_hook(after) for m in net.body if isinstance(m, nn.ReLU)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _initial(p: Params, content: torch.Tensor, generator: torch.Generator, start: FrameStart | None,
             init_image: Image.Image | None) -> torch.Tensor:
    """The first scale's starting image, at the content's size."""
    h, w = content.shape[-2:]
    if start is not None:
        return to_tensor(start.image.resize((w, h)), content.device)
    if init_image is not None:
        return to_tensor(init_image.resize((w, h), Image.Resampling.LANCZOS), content.device)
    if p.init == "content":
        return content.clone()
    # Mid-grey with mild noise: an unbiased start whose details the style fills in.
    noise = torch.randn(content.shape, generator=generator).to(content.device)
    return (127.5 + 8.0 * noise).clamp(0, 255)


def _evaluation(accel: Accel, plan: memory.Plan) -> str:
    """How the final scale was evaluated, when not plain: "winograd", "winograd, tiled, 4 tiles of
    1024 px". bfloat16 changes the arithmetic; tiling does not, but says why it took longer."""
    return ", ".join(label for label in ("" if accel == Accel() else accel.label(), plan.evaluation) if label)


def _run(p: Params, device: torch.device, accel: Accel, on_progress: ProgressFn | None,
         should_cancel: Callable[[], bool] | None, start: FrameStart | None, reuse: Reuse,
         available: int | None) -> Result:
    return _Optimisation(p, device, accel, on_progress, should_cancel, start, reuse, available).run()


class _Optimisation:
    """One run, coarse to fine: what the scales share (inputs, the network, the image, progress)
    and, per scale, its set-up (_objective), its steps (_optimise) and the progress they report,
    read a step behind on CUDA (_report)."""

    def __init__(self, p: Params, device: torch.device, accel: Accel, on_progress: ProgressFn | None,
                 should_cancel: Callable[[], bool] | None, start: FrameStart | None, reuse: Reuse,
                 available: int | None):
        self.t0 = time.perf_counter()
        self.p, self.device, self.accel, self.used = p, device, accel, accel
        self.on_progress, self.should_cancel, self.start = on_progress, should_cancel, start
        self.content_img, self.style_imgs = _load_inputs(p)
        self.init_img = images.load_image(p.init_image) if p.init == "image" and start is None else None
        self.mask_imgs = masks.load_masks(p)
        self.weights: Weights = load_weights(p.weights, device)
        self.reuse = reuse
        self.net = reuse.network(p, self.weights, device, accel)
        self.generator = torch.Generator().manual_seed(p.seed)
        self.temporal = start is not None and start.reliable is not None and p.temporal_weight > 0
        self.plans = memory_plans(p, device, available, self.content_img.size,
                                  [_style_side(p, size, self.style_imgs) for size in p.scale_sizes()], self.temporal)
        self.total = p.total_iterations()
        self.x: torch.Tensor | None = None
        self.previews: list[tuple[int, Image.Image]] = []
        self.done = 0
        self.losses: dict[str, float] = {}

    def check_cancel(self) -> None:
        # Between iterations, and between the set-up's forward passes: at a large size each of
        # those takes as long as an iteration.
        if self.should_cancel is not None and self.should_cancel():
            raise Cancelled()

    def run(self) -> Result:
        setup = time.perf_counter() - self.t0
        t_opt = time.perf_counter()
        sizes = self.p.scale_sizes()
        # On the CPU an iteration at a large size takes minutes: a cancel lands within a layer.
        asking = self.device.type == "cpu" and not self.accel.compile
        with asked_between_layers(self.net, self.check_cancel if asking else None, ASK_WITHIN_ITERATION_S):
            for scale_index, (size, plan) in enumerate(zip(sizes, self.plans)):
                objective, x = self._objective(size, plan)
                self._optimise(x, objective, size, plan, last_scale=scale_index == len(sizes) - 1)
        assert self.x is not None
        image = to_image(self.x)
        if self.p.original_colors:
            image = keep_colors(image, self.content_img)
        return Result(image=image, losses=self.losses,
                      timings={"setup": setup, "optimize": time.perf_counter() - t_opt,
                               "total": time.perf_counter() - self.t0},
                      previews=self.previews, weights_name=self.weights.name, weights_sha256=self.weights.sha256,
                      device=str(self.device), evaluation=_evaluation(self.used, self.plans[-1]))

    def _objective(self, size: int, plan: memory.Plan) -> tuple[LossFunction, torch.Tensor]:
        """The scale's objective (whole or tiled) and the image it starts from, ready to optimise."""
        p, device = self.p, self.device
        w, h = images.fit_within(self.content_img.width, self.content_img.height, size)
        content = to_tensor(self.content_img.resize((w, h), Image.Resampling.LANCZOS), device)
        regions = None if not self.mask_imgs else region_weights(
            [None if m is None else masks.fit(m, (w, h)) for m in self.mask_imgs], (w, h), p.blend_weights(), device)
        temporal = None
        if self.temporal:
            assert self.start is not None
            mask = torch.from_numpy(self.start.reliable.astype("float32"))[None, None].to(device)
            temporal = (to_tensor(self.start.image.resize((w, h)), device), mask)
        self.check_cancel()
        grams = self.reuse.grams(p, size, device, self.accel, self.net, self.style_imgs, plan)
        self.check_cancel()
        self.used = untiled(self.accel) if plan.tiled or plan.history_on_host else self.accel
        objective: LossFunction
        if plan.tiled:
            objective = TiledObjective(p, self.net, content, grams, tiles.grid(w, h, plan.tile, plan.halo), self.used,
                                       regions, temporal, on_tile=lambda tile, count: self._tile_done(size, tile, count))
        else:
            objective = Objective(p, self.net, content, [], self.used, regions, temporal, grams=grams)
        if self.x is None:
            x = _initial(p, content, self.generator, self.start, self.init_img)
        else:
            x = F.interpolate(self.x.detach(), size=(h, w), mode="bicubic", align_corners=False).clamp(0, 255)
        del content  # the objective keeps what it needs of it: at a print's size, every vector counts
        self.x = x.contiguous().requires_grad_(True)
        return objective, self.x

    def _tile_done(self, size: int, tile: int, tiles: int) -> None:
        """A tiled step's progress within it: a cancel lands between tiles."""
        self.check_cancel()
        if tile and self.on_progress is not None:
            self.on_progress(Progress(self.done, self.total, size, self.losses, time.perf_counter() - self.t0, None,
                                      tile, tiles))

    def _optimise(self, x: torch.Tensor, objective: LossFunction, size: int, plan: memory.Plan, last_scale: bool) -> None:
        """The scale's iterations; a preview every preview_every and at the end of a coarse scale."""
        p = self.p
        optimizer = _make_optimizer(p, x, self.used, plan)
        evaluate = evaluator(objective, x, self.used)
        parts: dict[str, torch.Tensor] = {}

        def closure() -> torch.Tensor:
            loss, found = evaluate()
            parts.clear()
            parts.update(found, total=loss)
            return loss

        def one_step() -> None:
            optimizer.step(closure)
            if p.optimizer == "adam":
                with torch.no_grad():  # as L-BFGS's box: the result is what gets saved, 0..255
                    x.clamp_(0, 255)

        step_once = stepper(one_step, self.used)
        # A tiled step reports its tiles as it goes: its iteration's report may not wait.
        lag = 0 if plan.tiled else progress_lag(self.device)
        waiting: list[_Step] = []
        for i in range(1, p.iterations + 1):
            self.check_cancel()
            step_once()
            self.done += 1
            last_of_scale = i == p.iterations
            preview = None
            if (p.preview_every and self.done % p.preview_every == 0) or (last_of_scale and not last_scale):
                preview = to_image(x)
                if p.original_colors:
                    preview = keep_colors(preview, self.content_img)
                self.previews.append((self.done, preview))
            waiting.append(_Step(self.done, size, LossReading(parts), preview))
            self._report(waiting, 0 if last_of_scale else lag, plan.tiles if plan.tiled else 0)

    def _report(self, waiting: list[_Step], lag: int, tiles: int) -> None:
        """Reports the waiting steps but the newest `lag`: a step's losses are read once the step
        after it is queued (progress_lag)."""
        while len(waiting) > lag:
            step = waiting.pop(0)
            self.losses = step.losses.read()
            if self.on_progress is not None:
                self.on_progress(Progress(step.iteration, self.total, step.size, self.losses,
                                          time.perf_counter() - self.t0, step.preview, 0, tiles))
