"""Region masks for regional styles: one grey-level image per style, white where that style
applies. Loaded and checked here, without torch (the UI validates uploads with it); turned into
per-pixel style weights by engine.gram.

A mask is stretched to the content image's size at every scale: masks drawn or made for the
photo share its aspect ratio, so this only resamples.
"""
from __future__ import annotations

import os

from PIL import Image

from engine.images import ImageError, load_image
from engine.params import Params

__all__ = ["EVERYWHERE", "fit", "is_everywhere", "load_mask", "load_masks"]

# The keyword for a style that applies everywhere (an empty entry means the same).
EVERYWHERE = "all"


def is_everywhere(entry: str) -> bool:
    return entry.strip().lower() in ("", EVERYWHERE)


def load_mask(source: str | os.PathLike | bytes, label: str = "The mask") -> Image.Image:
    """A mask as a grey-level ("L") image; raises ImageError for an unreadable image and for one
    that is black everywhere (it would apply its style nowhere)."""
    try:
        mask = load_image(source).convert("L")
    except ImageError as e:
        raise ImageError(f"{label} cannot be used: {e}") from None
    if mask.getextrema()[1] == 0:
        raise ImageError(f"{label} is black everywhere, so its style would apply nowhere; "
                         f"paint the style's region white (or use '{EVERYWHERE}').")
    return mask


def load_masks(p: Params) -> list[Image.Image | None]:
    """One grey-level mask per style (None: everywhere); empty when `p` has no masks."""
    out: list[Image.Image | None] = []
    for i, entry in enumerate(p.style_masks, start=1):
        if is_everywhere(entry):
            out.append(None)
        else:
            out.append(load_mask(entry, f"The mask for style {i} ({os.path.basename(entry)})"))
    return out


def fit(mask: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`mask` at `size` (width, height); Pillow's bilinear filter widens with the reduction, so
    shrinking averages over each output pixel's area."""
    return mask if mask.size == size else mask.resize(size, Image.Resampling.BILINEAR)
