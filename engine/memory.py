"""How much memory a run needs, estimated before it starts, so a job that cannot fit is refused
with a size that would, instead of failing minutes later (or taking the machine down).

Plain arithmetic over the shapes engine.transfer creates; no torch (the UI imports this).
Peak use is at the final (largest) scale and is dominated by VGG19's activations, kept for the
backward pass, and by L-BFGS's history of image-sized vectors. A clip's frames come on top, in
the host's memory, wherever the run computes.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from engine import layers, tiles
from engine.images import fit_within
from engine.params import LBFGS_HISTORY, WINOGRAD_MIN_OUT_CHANNELS, Params

FLOAT_BYTES = 4
# engine.lbfgs beside its history: two scratch rows, the last point's gradient and step, and at
# most three working vectors at once in a step (the gradient kept, its change or the direction,
# the masks of pixels at a bound).
LBFGS_EXTRA_VECTORS = 2 + 2 + 3
LBFGS_ROWS_EXTRA = 2  # the scratch rows, kept with the history
ADAM_VECTORS = 2 + 2  # exp_avg, exp_avg_sq, and the step's working vectors
# engine.winograd, the CPU's default: a deep convolution keeps its kernels transformed for the
# forward and the backward pass, 36 floats for every 9 of the weights in each.
WINOGRAD_KERNEL_FLOATS = 2 * 36 // 9
# Allocator rounding and fragmentation, and the cuDNN workspace, on top of the tensors.
SAFETY_FACTOR = 1.2
OVERHEAD_BYTES = 300 * 1024**2
# Pillow keeps an RGB image in 4 bytes a pixel.
PIXEL_BYTES = 4
# Sizes suggested when a run does not fit, largest first.
NICE_SIZES = (16384, 12288, 8192, 6144, 4096, 3072, 2048, 1536, 1280, 1024, 768, 640, 512, 384, 256, 192, 128, 64,
              32, 16)
# The smallest tile core tried (px), a last resort: its 80 px halos make each tile 12 times its core.
MIN_TILE = 64
BUDGET_ENV = "STUDIO_MEMORY_BUDGET"
_UNITS = {"": 1, "B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4,
          "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "TIB": 1024**4}


def parse_bytes(text: str) -> int:
    """"4GB", "1.5GB", "800MB", "2GiB" or a number of bytes; ValueError for anything else."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*", str(text))
    unit = found and found.group(2).upper()
    if not found or unit not in _UNITS or float(found.group(1)) <= 0:
        raise ValueError(f"{text!r} is not an amount of memory: write e.g. 4GB, 1.5GB or 800MB")
    return int(float(found.group(1)) * _UNITS[unit])


def budget_from_env() -> int | None:
    """$STUDIO_MEMORY_BUDGET in bytes, or None when unset; ValueError when it is not an amount."""
    text = os.environ.get(BUDGET_ENV, "").strip()
    return parse_bytes(text) if text else None


def within_budget(available: int | None, budget: int | None) -> int | None:
    """What a run may use: the device's free memory, capped by a budget (either may be unknown)."""
    known = [n for n in (available, budget) if n is not None]
    return min(known) if known else None


def _activations(convs: tuple[layers.Conv, ...], width: int, height: int) -> int:
    """Floats held by one forward pass kept for the backward one: each convolution's output (ReLU
    works in place) and each pooling's output."""
    total, last_scale = 0, 1
    for conv in convs:
        scale = conv.downscale
        if scale != last_scale:  # a pooling before this block
            total += conv.in_channels * (width // scale) * (height // scale)
            last_scale = scale
        total += conv.out_channels * (width // scale) * (height // scale)
    return total


def _forward_peak(convs: tuple[layers.Conv, ...], width: int, height: int, kept: set[str]) -> int:
    """Floats held at once by a forward pass without gradients: a convolution's input and output,
    and the outputs of the layers it returns, kept as it goes."""
    peak, held, previous = 0, 0, 3 * width * height
    for conv in convs:
        out = conv.out_channels * (width // conv.downscale) * (height // conv.downscale)
        peak = max(peak, held + previous + out)
        held += out if conv.name in kept else 0
        previous = out
    return peak


def clip_bytes(params: Params, content_shape: tuple[int, int] | None, frames: int) -> int:
    """Host bytes a clip of `frames` frames of `content_shape` holds while it is styled
    (engine.clip_transfer): every frame decoded as uploaded, and at the result's size every input frame
    and every result. Nothing for a still."""
    if frames <= 1:
        return 0
    shape = content_shape or (params.size, params.size)
    width, height = fit_within(*shape, params.size, min_side=1)
    return frames * PIXEL_BYTES * (shape[0] * shape[1] + 2 * width * height)


@dataclass(frozen=True)
class Plan:
    """How a run's scale is evaluated and what it holds where: the whole image at once, or tiles
    (engine/tiled.py); L-BFGS's history, and on a GPU whether it is kept in the host's memory.
    Bytes include the allocator's margin (SAFETY_FACTOR) and a fixed overhead."""

    width: int
    height: int
    tile: int  # the tiles' core side in px; 0: the whole image at once
    tiles: int  # 1 for the whole image
    halo: int  # px around each core (engine.tiles.halo)
    history: int  # L-BFGS's pairs (0 for Adam)
    history_on_host: bool  # a GPU run's history kept in the host's memory
    device_bytes: int  # peak on the run's device (on the CPU: everything)
    host_bytes: int  # on the host beside it while a GPU computes: the history kept there (clip_bytes: frames)

    @property
    def tiled(self) -> bool:
        return self.tile > 0

    @property
    def evaluation(self) -> str:
        """"tiled, 12 tiles of 1024 px", or "" for the whole image."""
        return tiles.describe(self.tiles, self.tile) if self.tiled else ""

    def fits(self, available: int | None, host_available: int | None = None) -> bool:
        on_device = available is None or self.device_bytes <= available
        return on_device and (host_available is None or self.host_bytes <= host_available)

    def device_bytes_after(self, steps: int) -> int:
        """device_bytes as it stands after `steps` L-BFGS steps, with at most that many of the
        history's pairs kept yet (a benchmark's few steps cannot fill it)."""
        missing = 0 if self.history_on_host else max(0, self.history - steps)
        return self.device_bytes - _bytes(2 * missing * 3 * self.width * self.height)


def _weights(params: Params, convs: tuple[layers.Conv, ...]) -> int:
    weights = sum(c.in_channels * c.out_channels * 9 + c.out_channels for c in convs)
    if params.device == "cpu":
        weights += sum(c.in_channels * c.out_channels * 9 * WINOGRAD_KERNEL_FLOATS
                       for c in convs if c.out_channels >= WINOGRAD_MIN_OUT_CHANNELS)
    return weights


def _bytes(floats: float) -> int:
    return int(floats * FLOAT_BYTES * SAFETY_FACTOR)


def _plan(params: Params, width: int, height: int, tile: int, host_history: bool, frames_bytes: int,
          style_side: int, temporal: bool) -> Plan:
    pixels, vector = width * height, 3 * width * height
    used = set(params.content_layers) | set(params.style_layers)
    deepest = max(used, key=layers.LAYERS.index)
    convs = layers.up_to(deepest)
    margin = tiles.halo(deepest)
    n_tiles, shape = 1, (width, height)
    if tile:
        n_tiles, shape = tiles.extent(width, height, tile, margin)
    history = lbfgs_history(pixels) if params.optimizer == "lbfgs" else 0
    optimiser = (2 * history + LBFGS_EXTRA_VECTORS) * vector if history else ADAM_VECTORS * vector
    # On the host: the rows, and the copies of the vectors a step takes there.
    kept = (2 * history + LBFGS_ROWS_EXTRA + 2) * vector if host_history else 0
    on_device = optimiser - (2 * history + LBFGS_ROWS_EXTRA) * vector if host_history else optimiser
    # The image, its gradient and the content image; the content's features at the content
    # layers; the regions' weights, per style; a clip frame's temporal target and mask.
    base = 3 * vector + sum(layers.BY_NAME[c].out_channels * pixels // layers.BY_NAME[c].downscale ** 2
                            for c in params.content_layers)
    base += (len(params.styles) if params.style_masks else 0) * pixels + (4 * pixels if temporal else 0)
    grams = sum(c.out_channels ** 2 for c in convs if c.name in params.style_layers) * (len(params.styles) + 3)
    # Evaluating: the activations and their gradients (one tile's) and total variation's
    # differences (two for autograd; a tiled evaluation works them out by hand, one at a time,
    # into the gradient it adds the tiles' into).
    evaluate = 2 * _activations(convs, *shape) + 2 * vector
    style = _forward_peak(convs, min(style_side, shape[0]), min(style_side, shape[1]), used)
    floats = _weights(params, convs) + base + grams + on_device + max(evaluate, style)
    return Plan(width, height, tile, n_tiles, margin if tile else 0, history, host_history,
                _bytes(floats) + OVERHEAD_BYTES + (frames_bytes if params.device == "cpu" else 0),
                _bytes(kept))


def _cores(width: int, height: int) -> list[int]:
    """Tile core sides to try, largest first: each one tile more along the longer side than the
    one before (none for an image too small to cut)."""
    longest, found = max(width, height), []
    for n in range(2, longest // MIN_TILE + 1):
        core = -(-longest // n // tiles.GRID) * tiles.GRID
        if core not in found and MIN_TILE <= core < longest:
            found.append(core)
    return found


def plan(params: Params, available: int | None, content_shape: tuple[int, int] | None = None, frames: int = 1,
         host_available: int | None = None, size: int | None = None, style_side: int | None = None,
         temporal: bool | None = None) -> Plan:
    """How to evaluate `params` at `size` (its final size by default) within `available` bytes of
    its device (and `host_available` of the host, for a GPU's history): the whole image when it
    fits (or nothing is known), else the largest tiles that do; where nothing fits, the smallest
    tiles with the history kept on the host (refusal says so). `content_shape` is the content
    image's (width, height), square without it (an upper bound); `style_side` the style images'
    largest side at this size (Params.style_side without it, an upper bound); `temporal`: whether
    a clip's temporal term is held (by default, for a clip)."""
    size = size or params.size
    width, height = fit_within(*(content_shape or (1, 1)), size, min_side=1)
    frames_bytes = clip_bytes(params, content_shape, frames)
    side = style_side or params.style_side(size)
    tiles_to_try = [0] + _cores(width, height)  # the whole image, then ever smaller tiles

    def planned(i: int, host_history: bool) -> Plan:
        return _plan(params, width, height, tiles_to_try[i], host_history, frames_bytes, side,
                     frames > 1 if temporal is None else temporal)

    gpu_history_choices = (False, True) if params.device != "cpu" and params.optimizer == "lbfgs" else (False,)
    for host_history in gpu_history_choices:
        # Smaller tiles never need more memory, so the first that fits is found by bisection
        # (a 16384 px image has hundreds of tile sizes to try).
        low, high, fitting = 0, len(tiles_to_try), None
        while low < high:
            middle = (low + high) // 2
            candidate = planned(middle, host_history)
            if candidate.fits(available, host_available):
                high, fitting = middle, candidate
            else:
                low = middle + 1
        if fitting is not None:
            return fitting  # the plan at `high`: the first that fits
    return planned(len(tiles_to_try) - 1, gpu_history_choices[-1])  # nothing fits: the smallest tiles


def estimate_bytes(params: Params, content_shape: tuple[int, int] | None = None, frames: int = 1) -> int:
    """Peak bytes for `params` on its device evaluated on the whole image at once (on "cpu", with
    the Winograd kernels that its default accel keeps, and a clip's frames)."""
    return plan(params, None, content_shape, frames).device_bytes


def lbfgs_history(pixels: int) -> int:
    """The L-BFGS pairs kept for an image of `pixels`: LBFGS_HISTORY up to 2048 × 2048, then fewer,
    as neural-style (5 at 3620 px) and Galerne et al. (10 after the coarsest scale) did; at 8192 px
    twenty pairs alone would take 32 GB. What it costs per iteration: docs/performance.md."""
    if pixels <= 2048 * 2048:
        return LBFGS_HISTORY
    return 10 if pixels <= 4096 * 4096 else 5


def largest_size_that_fits(params: Params, available: int, content_shape: tuple[int, int] | None = None,
                           frames: int = 1, host_available: int | None = None) -> int | None:
    """The largest of NICE_SIZES, up to params.size, that fits in `available` bytes in some way
    (in tiles if need be)."""
    for size in NICE_SIZES:
        if size <= params.size and plan(params, available, content_shape, frames, host_available,
                                        size=size).fits(available, host_available):
            return size
    return None


def format_bytes(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def refusal(params: Params, available: int | None, device: str = "the device",
            content_shape: tuple[int, int] | None = None, frames: int = 1,
            host_available: int | None = None) -> str | None:
    """Why `params` cannot run in `available` bytes of its device (and `host_available` of the
    host, for a GPU run's history) even in the smallest tiles, or None when it fits in some way
    (or nothing is known). What is left then is the image and the optimiser's state themselves."""
    if available is None:
        return None
    found = plan(params, available, content_shape, frames, host_available)
    if found.fits(available, host_available):
        return None
    if found.device_bytes > available:
        message = (f"Not enough memory: this run needs about {format_bytes(found.device_bytes)} even in tiles, "
                   f"{device} has {format_bytes(available)} free")
    else:
        message = (f"Not enough memory: this run's L-BFGS history needs about {format_bytes(found.host_bytes)} "
                   f"of RAM, and {format_bytes(host_available or 0)} is free")
    size = largest_size_that_fits(params, available, content_shape, frames, host_available)
    advice = f"the largest size that would fit is {size} px" if size else _no_size_fits(frames)
    return f"{message}; {advice}."


def clip_refusal(params: Params, available: int | None, content_shape: tuple[int, int] | None,
                 frames: int) -> str | None:
    """Why a clip's frames do not fit in the host's `available` bytes while a GPU styles them, or
    None (on the CPU, `refusal` counts them with the rest)."""
    need = clip_bytes(params, content_shape, frames)
    if available is None or need <= available:
        return None
    return (f"Not enough memory: this clip's {frames} frames need about {format_bytes(need)} of RAM, "
            f"and {format_bytes(available)} is free; {_no_size_fits(frames)}.")


def _no_size_fits(frames: int) -> str:
    return "try a shorter or smaller clip, or free some memory" if frames > 1 else \
        "free some memory or use another device"


def cpu_available_bytes() -> int | None:
    """Memory the system can give this process without swapping: MemAvailable, capped by the
    cgroup (container) limit when there is one; None where neither can be read."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            found.append(max(0, int(limit) - used))
    except (OSError, ValueError):
        pass
    return min(found) if found else None
