"""How much memory a run needs, estimated before it starts, so a job that cannot fit is refused
with a size that would, instead of failing minutes later (or taking the machine down).

Plain arithmetic over the shapes engine.transfer creates; no torch (the UI imports this).
Peak use is at the final (largest) scale and is dominated by VGG19's activations, kept for the
backward pass, and by L-BFGS's history of image-sized vectors. A clip's frames come on top, in
the host's memory, wherever the run computes.
"""
from __future__ import annotations

from pathlib import Path

from engine import layers
from engine.images import fit_within
from engine.params import LBFGS_HISTORY, WINOGRAD_MIN_OUT_CHANNELS, Params

FLOAT_BYTES = 4
# engine.lbfgs: its step and gradient-change history, plus a handful of working vectors.
LBFGS_VECTORS = 2 * LBFGS_HISTORY + 6
ADAM_VECTORS = 2  # exp_avg, exp_avg_sq
# engine.winograd, the CPU's default: a deep convolution keeps its kernels transformed for the
# forward and the backward pass, 36 floats for every 9 of the weights in each.
WINOGRAD_KERNEL_FLOATS = 2 * 36 // 9
# Allocator rounding and fragmentation, and the cuDNN workspace, on top of the tensors.
SAFETY_FACTOR = 1.2
OVERHEAD_BYTES = 300 * 1024**2
# Pillow keeps an RGB image in 4 bytes a pixel.
PIXEL_BYTES = 4
# Sizes suggested when a run does not fit, largest first.
NICE_SIZES = (4096, 3072, 2048, 1536, 1280, 1024, 768, 640, 512, 384, 256, 192, 128, 64, 32, 16)


def _activations(convs: tuple[layers.Conv, ...], width: int, height: int) -> int:
    """Floats held by one forward pass: each convolution's output (ReLU works in place) and
    each pooling's output."""
    total, last_scale = 0, 1
    for conv in convs:
        scale = conv.downscale
        if scale != last_scale:  # a pooling before this block
            total += conv.in_channels * (width // scale) * (height // scale)
            last_scale = scale
        total += conv.out_channels * (width // scale) * (height // scale)
    return total


def clip_bytes(params: Params, content_shape: tuple[int, int] | None, frames: int) -> int:
    """Host bytes a clip of `frames` frames of `content_shape` holds while it is styled
    (engine.animate): every frame decoded as uploaded, and at the result's size every input frame
    and every result. Nothing for a still."""
    if frames <= 1:
        return 0
    shape = content_shape or (params.size, params.size)
    width, height = fit_within(*shape, params.size, min_side=1)
    return frames * PIXEL_BYTES * (shape[0] * shape[1] + 2 * width * height)


def estimate_bytes(params: Params, content_shape: tuple[int, int] | None = None, frames: int = 1) -> int:
    """Peak bytes for `params` on its device (on "cpu", with the Winograd kernels that its default
    accel keeps, and a clip's frames). `content_shape` is the content image's (width, height);
    without it the result is assumed square, an upper bound."""
    width, height = fit_within(*(content_shape or (1, 1)), params.size, min_side=1)
    pixels = width * height
    used = set(params.content_layers) | set(params.style_layers)
    convs = layers.up_to(max(used, key=layers.LAYERS.index))
    weights = sum(c.in_channels * c.out_channels * 9 + c.out_channels for c in convs)
    if params.device == "cpu":
        weights += sum(c.in_channels * c.out_channels * 9 * WINOGRAD_KERNEL_FLOATS
                       for c in convs if c.out_channels >= WINOGRAD_MIN_OUT_CHANNELS)

    # Optimisation: activations and as much again for their gradients during backward.
    optimise = 2 * _activations(convs, width, height)
    vectors = LBFGS_VECTORS if params.optimizer == "lbfgs" else ADAM_VECTORS
    optimise += 3 * pixels * (vectors + 3)  # + the image, its gradient, the content image
    grams = sum(c.out_channels ** 2 for c in convs if c.name in params.style_layers)
    optimise += grams * max(1, len(params.styles))

    # Before that, each style image passes through the network once without gradients.
    style_side = params.style_side(params.size)
    style = _activations(convs, style_side, style_side) + 3 * style_side * style_side

    floats = weights + max(optimise, style)
    host = clip_bytes(params, content_shape, frames) if params.device == "cpu" else 0
    return int(floats * FLOAT_BYTES * SAFETY_FACTOR) + OVERHEAD_BYTES + host


def largest_size_that_fits(params: Params, available: int, content_shape: tuple[int, int] | None = None,
                           frames: int = 1) -> int | None:
    """The largest of NICE_SIZES, up to params.size, whose estimate fits in `available` bytes."""
    for size in NICE_SIZES:
        if size <= params.size and estimate_bytes(params.with_changes(size=size), content_shape, frames) <= available:
            return size
    return None


def format_bytes(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def refusal(params: Params, available: int | None, device: str = "the device",
            content_shape: tuple[int, int] | None = None, frames: int = 1) -> str | None:
    """Why `params` cannot run in `available` bytes, or None when it fits (or nothing is known)."""
    if available is None:
        return None
    need = estimate_bytes(params, content_shape, frames)
    if need <= available:
        return None
    message = f"Not enough memory: this run needs about {format_bytes(need)}, {device} has {format_bytes(available)} free"
    size = largest_size_that_fits(params, available, content_shape, frames)
    advice = f"try a size of {size} or less" if size else _no_size_fits(frames)
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
