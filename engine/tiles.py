"""Where the tiles of a tiled evaluation lie (engine/tiled.py evaluates them): cores that cut the
image into a grid, each padded by a halo wide enough that the features it counts are exactly the
whole image's.

Stdlib only: engine.memory sizes tiles with it before anything runs.

Two ways to combine tiles are exact (docs/performance.md, "Prints"):
- "core" (the engine's): a tile's loss counts the feature positions of its core only, and its
  whole input gradient is added into the image's. Each feature position belongs to one core, and
  it is computed exactly when the halo covers what it sees: for conv5_1, 70 px left and 69 right,
  so 80 px on the 16 px grid.
- "crop": a tile's loss counts every position of the padded tile and only its core's input
  gradient is kept. A core pixel's gradient comes from every feature that sees it, each of which
  must see only real pixels: the whole receptive field less one, 155 px for conv5_1, so 160.
"""
from __future__ import annotations

from dataclasses import dataclass

from engine import layers

# Tile offsets are multiples of VGG19's deepest downscale, so every 2×2 pooling of a tile pools
# the same pixels as the whole image's does.
GRID = 16
COMBINES = ("core", "crop")


def _up(n: float, step: int = GRID) -> int:
    return int(-(-n // step) * step)


def halo(deepest: str, combine: str = "core") -> int:
    """The margin, in px (a multiple of GRID), that makes a tiled evaluation up to `deepest` exact."""
    left, right = layers.reach(deepest)
    if combine == "crop":
        return _up(left + right)
    s = layers.BY_NAME[deepest].downscale
    return _up(max(left, right - s + 1))


@dataclass(frozen=True)
class Box:
    """A rectangle of the image in px, x0 <= x < x1, y0 <= y < y1."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    def at(self, scale: int) -> Box:
        """The positions of a layer of `scale` (its downscale) this box's pixels make, in the
        whole image's layer; floors as the poolings do at the image's edge."""
        return Box(self.x0 // scale, self.y0 // scale, self.x1 // scale, self.y1 // scale)


@dataclass(frozen=True)
class Tile:
    core: Box  # the pixels (and the feature positions) this tile stands for
    box: Box  # core and halo, within the image: what goes through the network


def _cuts(length: int, core: int) -> list[int]:
    """Cut points 0 = c0 < c1 < ... = length, on the grid, as even as the grid allows."""
    n = max(1, -(-length // core))
    return [0, *(_up(length * k / n) for k in range(1, n)), length]


def _spans(length: int, core: int, margin: int) -> list[tuple[int, int, int, int]]:
    """Along one side: each core's (start, end) and its padded box's, the box `margin` px wider
    on each side where the image goes on."""
    cuts = _cuts(length, core)
    return [(a, b, max(0, a - margin), min(length, b + margin)) for a, b in zip(cuts, cuts[1:])]


def grid(width: int, height: int, core: int, margin: int) -> list[Tile]:
    """Tiles whose cores (at most `core` px a side, rows first) cover the image, each padded by
    `margin` px where the image goes on."""
    return [Tile(Box(x0, y0, x1, y1), Box(bx0, by0, bx1, by1))
            for y0, y1, by0, by1 in _spans(height, core, margin)
            for x0, x1, bx0, bx1 in _spans(width, core, margin)]


def extent(width: int, height: int, core: int, margin: int) -> tuple[int, tuple[int, int]]:
    """How many tiles `grid` cuts and its largest padded tile's (width, height): what one tile's
    pass holds. Worked out along each side, without the tiles (16384 px in 64 px cores is 49152)."""
    across = [end - start for *_, start, end in _spans(width, core, margin)]
    down = [end - start for *_, start, end in _spans(height, core, margin)]
    return len(across) * len(down), (max(across), max(down))


def describe(tiles: int, core: int) -> str:
    """How a job was evaluated, for its record: "tiled, 12 tiles of 1024 px"."""
    return f"tiled, {tiles} tile{'s' * (tiles != 1)} of {core} px"
