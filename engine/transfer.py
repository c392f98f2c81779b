"""Gatys et al. style transfer: optimise an image so its VGG19 features match the content
image's (conv4_2) and its Gram matrices match the style images' (conv1_1 .. conv5_1), coarse to
fine. The loss is engine/objective.py's, evaluated on the whole image or, where that would not
fit, tile by tile (engine/tiled.py).
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from PIL import Image

from engine import images, masks, memory, tiles
# GramMSE, gram, Objective and features are also the engine's API from here (bench, tests).
from engine.gram import GramMSE, gram, region_weights
from engine.accel import Accel, default_accel, evaluator, precision, prepare, stepper
from engine.objective import Objective, features, style_grams
from engine.lbfgs import LBFGS
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
        index = choice.partition(":")[2]
        if index and int(index) >= torch.cuda.device_count():
            raise ParamsError({"device": f"{choice} was asked for but this machine has "
                                         f"{torch.cuda.device_count()} GPU(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}"})
        return choice if index else "cuda"
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
    # byte, 2.1 s for a 512 px image where this takes under a millisecond.
    return Image.fromarray(arr.numpy(), "RGB")


def keep_colors(result: Image.Image, content: Image.Image) -> Image.Image:
    """Luminance from the result, chroma from the content (neural-style's -original_colors)."""
    y, _, _ = result.convert("YCbCr").split()
    _, cb, cr = content.resize(result.size, Image.BICUBIC).convert("YCbCr").split()
    return Image.merge("YCbCr", (y, cb, cr)).convert("RGB")


def _load_inputs(p: Params) -> tuple[Image.Image, list[Image.Image]]:
    return images.load_image(p.content), [images.load_image(s) for s in p.styles]


def _style_side(p: Params, size: int, styles: list[Image.Image]) -> int:
    """The largest side any of the style images is made at `size` (Params.style_side)."""
    return max((p.style_side(size, max(s.size)) for s in styles), default=MIN_SIZE)


def _style_tensors(styles: list[Image.Image], size: int, p: Params, device: torch.device) -> list[torch.Tensor]:
    return [to_tensor(images.resize_longest(s, p.style_side(size, max(s.size))), device) for s in styles]


def _make_optimizer(p: Params, x: torch.Tensor, accel: Accel, plan: memory.Plan) -> torch.optim.Optimizer | LBFGS:
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
    each style size. A clip's frames (engine/animate.py) share one. `built` counts the networks
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
    `start`: a clip's later frame (engine/animate.py) starts there, single scale. `reuse`: the
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
        return to_tensor(init_image.resize((w, h), Image.LANCZOS), content.device)
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
    t0 = time.perf_counter()

    def check_cancel() -> None:
        # Between iterations, and between the set-up's forward passes: at a large size each of
        # those takes as long as an iteration.
        if should_cancel is not None and should_cancel():
            raise Cancelled()

    content_img, style_imgs = _load_inputs(p)
    init_img = images.load_image(p.init_image) if p.init == "image" and start is None else None
    mask_imgs = masks.load_masks(p)
    weights: Weights = load_weights(p.weights, device)
    net = reuse.network(p, weights, device, accel)
    generator = torch.Generator().manual_seed(p.seed)
    sizes = p.scale_sizes()
    plans = memory_plans(p, device, available, content_img.size,
                         [_style_side(p, size, style_imgs) for size in p.scale_sizes()],
                         start is not None and start.reliable is not None and p.temporal_weight > 0)
    total = p.total_iterations()
    setup = time.perf_counter() - t0
    t_opt = time.perf_counter()

    x: torch.Tensor | None = None
    previews: list[tuple[int, Image.Image]] = []
    done = 0
    losses: dict[str, float] = {}
    used = accel
    # On the CPU an iteration at a large size takes minutes: a cancel lands within a layer.
    asking = device.type == "cpu" and not accel.compile
    with asked_between_layers(net, check_cancel if asking else None, ASK_WITHIN_ITERATION_S):
        for scale_index, (size, plan) in enumerate(zip(sizes, plans)):
            w, h = images.fit_within(content_img.width, content_img.height, size)
            content = to_tensor(content_img.resize((w, h), Image.LANCZOS), device)
            regions = None if not mask_imgs else region_weights(
                [None if m is None else masks.fit(m, (w, h)) for m in mask_imgs], (w, h), p.blend_weights(), device)
            temporal = None
            if start is not None and start.reliable is not None and p.temporal_weight > 0:
                mask = torch.from_numpy(start.reliable.astype("float32"))[None, None].to(device)
                temporal = (to_tensor(start.image.resize((w, h)), device), mask)
            check_cancel()
            grams = reuse.grams(p, size, device, accel, net, style_imgs, plan)
            check_cancel()
            used = untiled(accel) if plan.tiled or plan.history_on_host else accel

            def on_tile(tile: int, tiles: int, size: int = size) -> None:
                check_cancel()
                if tile and on_progress is not None:
                    on_progress(Progress(done, total, size, losses, time.perf_counter() - t0, None, tile, tiles))

            if plan.tiled:
                objective = TiledObjective(p, net, content, grams, tiles.grid(w, h, plan.tile, plan.halo), used,
                                           regions, temporal, on_tile=on_tile)
            else:
                objective = Objective(p, net, content, [], used, regions, temporal, grams=grams)
            if x is None:
                x = _initial(p, content, generator, start, init_img)
            else:
                x = F.interpolate(x.detach(), size=(h, w), mode="bicubic", align_corners=False).clamp(0, 255)
            del content  # the objective keeps what it needs of it: at a print's size, every vector counts
            x = x.contiguous().requires_grad_(True)
            optimizer = _make_optimizer(p, x, used, plan)
            evaluate = evaluator(objective, x, used)
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

            step_once = stepper(one_step, used)
            # A tiled step reports its tiles as it goes: its iteration's report may not wait.
            lag = 0 if plan.tiled else progress_lag(device)
            waiting: list[_Step] = []
            for i in range(1, p.iterations + 1):
                check_cancel()
                step_once()
                done += 1
                last_of_scale = i == p.iterations
                preview = None
                if (p.preview_every and done % p.preview_every == 0) or (last_of_scale and scale_index < len(sizes) - 1):
                    preview = to_image(x)
                    if p.original_colors:
                        preview = keep_colors(preview, content_img)
                    previews.append((done, preview))
                waiting.append(_Step(done, size, LossReading(parts), preview))
                # The newest step's losses are read once the step after it is queued (progress_lag).
                while len(waiting) > (0 if last_of_scale else lag):
                    step = waiting.pop(0)
                    losses = step.losses.read()
                    if on_progress is not None:
                        on_progress(Progress(step.iteration, total, step.size, losses, time.perf_counter() - t0,
                                             step.preview, 0, plan.tiles if plan.tiled else 0))
    image = to_image(x)
    if p.original_colors:
        image = keep_colors(image, content_img)
    optimize = time.perf_counter() - t_opt
    return Result(image=image, losses=losses,
                  timings={"setup": setup, "optimize": optimize, "total": time.perf_counter() - t0},
                  previews=previews, weights_name=weights.name, weights_sha256=weights.sha256,
                  device=str(device), evaluation=_evaluation(used, plans[-1]))
