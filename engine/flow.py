"""Optical flow between input frames, warping, and where the flow can be trusted: what the
temporal term of video style transfer needs (Ruder et al., "Artistic style transfer for videos",
2016). DIS flow from OpenCV: on the CPU, no weights to download.

Flows are (H, W, 2) float32 arrays of pixel offsets (dx, dy); `flow(a, b)` gives, for each pixel
of `a`, where it is in `b`, so `warp(b_image, flow(a, b))` lines b up with a.
"""
from __future__ import annotations

import numpy as np
from PIL import Image


def _grey(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("L"))


def flow(a: Image.Image, b: Image.Image) -> np.ndarray:
    """Dense flow from frame `a` to frame `b` (same size)."""
    import cv2

    dis = cv2.DISOpticalFlow.create(cv2.DISOpticalFlow_PRESET_MEDIUM)
    # cv2's stubs make the output array `flow` required; the binding takes None and allocates it.
    return dis.calc(_grey(a), _grey(b), None).astype(np.float32)  # type: ignore[call-overload]


def warp(img: Image.Image, offsets: np.ndarray) -> Image.Image:
    """`img` sampled at each pixel's position plus its offset (bilinear; borders repeated)."""
    import cv2

    height, width = offsets.shape[:2]
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    out = cv2.remap(np.asarray(img.convert("RGB")), xs + offsets[..., 0], ys + offsets[..., 1],
                    interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return Image.fromarray(out)


def reliable(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """Where the flow `forward` (a → b) can be trusted, as a boolean (H, W) mask: following it
    and then `backward` (b → a) comes back to the start (Ruder et al.'s consistency check), and
    the pixel stays inside the frame. Occluded and disoccluded pixels fail it."""
    height, width = forward.shape[:2]
    back_there = _sample(backward, forward)
    round_trip = forward + back_there
    close = (round_trip ** 2).sum(-1) <= 0.01 * ((forward ** 2).sum(-1) + (back_there ** 2).sum(-1)) + 0.5
    xs, ys = np.meshgrid(np.arange(width), np.arange(height))
    inside = ((xs + forward[..., 0] >= 0) & (xs + forward[..., 0] <= width - 1)
              & (ys + forward[..., 1] >= 0) & (ys + forward[..., 1] <= height - 1))
    return close & inside


def _sample(field: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    import cv2

    height, width = offsets.shape[:2]
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return cv2.remap(field, xs + offsets[..., 0], ys + offsets[..., 1], interpolation=cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def motion(previous: Image.Image, current: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """How `current` came from `previous`: the flow back from each of its pixels (to warp the
    previous frame onto it), and where that flow is reliable."""
    back = flow(current, previous)
    return back, reliable(back, flow(previous, current))


def flicker(outputs: list[Image.Image], inputs: list[Image.Image]) -> float:
    """Mean absolute difference (0..255) between each output frame and the previous output frame
    warped by the *input's* flow, over the pixels where that flow is reliable: how much a result
    changes beyond what the input's motion explains."""
    total, count = 0.0, 0
    for k in range(1, len(outputs)):
        back, mask = motion(inputs[k - 1], inputs[k])
        warped = np.asarray(warp(outputs[k - 1], back), dtype=np.float32)
        diff = np.abs(np.asarray(outputs[k].convert("RGB"), dtype=np.float32) - warped).mean(-1)
        total += float(diff[mask].sum())
        count += int(mask.sum())
    return total / count if count else 0.0
