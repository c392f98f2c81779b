"""`python -m bench.quality`: how this engine's results compare with the published ones.

Writes two figures (defaults sized for a 2-core CPU; pass bigger sizes on a GPU):

- `quality-sheet.png`: for every reference in ../shared/images/reference (outputs of
  jcjohnson/neural-style, 512 px, 1000 L-BFGS iterations), this engine's result with the same
  content, styles, style scale, blend and colour setting beside the published image.
- `consistency.png`: the result at a small size beside the result at a large size scaled down to
  the small one, multi-scale on and off, with a Gram and a pixel distance between the two.

Prints the numbers as a markdown table for docs/quality.md. Figures, not assertions.
"""
from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageChops, ImageDraw, ImageFont

from engine import images
from engine.params import Params
from engine.transfer import pick_device, run
from harness.metrics import gram_distance, pixel_rmse, style_net
from harness.paths import ROOT, TEST_IMAGES

PUBLISHED = "jcjohnson/neural-style, 512 px, 1000 L-BFGS iterations"


@dataclass(frozen=True)
class Case:
    """The settings behind one published reference image."""

    content: str  # file name in content/
    styles: tuple[str, ...]  # file names in style/
    changes: dict[str, Any] = field(default_factory=dict)  # Params fields that differ from defaults

    def params(self, base: Params, shared: Path) -> Params:
        return base.with_changes(content=str(shared / "content" / self.content),
                                 styles=tuple(str(shared / "style" / s) for s in self.styles), **self.changes)

    def caption(self) -> str:
        extras = ", ".join(f"{k} {_show(v)}" for k, v in self.changes.items())
        text = f"{Path(self.content).stem} + {' + '.join(Path(s).stem for s in self.styles)}"
        return f"{text} ({extras})" if extras else text


# Keyed by the reference's file name; the settings are those of neural-style's README examples.
CASES: dict[str, Case] = {
    "tubingen_starry.png": Case("tubingen.jpg", ("starry_night.jpg",)),
    "tubingen_scream.png": Case("tubingen.jpg", ("the_scream.jpg",)),
    "tubingen_seated_nude.png": Case("tubingen.jpg", ("seated-nude.jpg",)),
    "tubingen_starry_original_color.png": Case("tubingen.jpg", ("starry_night.jpg",), {"original_colors": True}),
    "golden_gate_starry.png": Case("golden_gate.jpg", ("starry_night.jpg",)),
    "golden_gate_starry_scale2.png": Case("golden_gate.jpg", ("starry_night.jpg",), {"style_scale": 2.0}),
    "golden_gate_starry_scream_5_5.png": Case("golden_gate.jpg", ("starry_night.jpg", "the_scream.jpg"),
                                              {"style_blend": (0.5, 0.5)}),
}
CONSISTENCY_CASE = CASES["tubingen_starry.png"]


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return "/".join(f"{v:g}" for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


# --- rendering ---------------------------------------------------------------------------------

_results: dict[Params, Image.Image] = {}


def render(p: Params, label: str) -> Image.Image:
    """run(p).image, once per distinct schedule (a single-scale run is the same with or without
    the multi-scale flag, so the consistency figure need not pay for it twice)."""
    key = p if len(p.scale_sizes()) > 1 else p.with_changes(multiscale=False)
    if key not in _results:
        t = time.perf_counter()
        _results[key] = run(p).image
        print(f"  {label}: {p.size} px, scales {p.scale_sizes()} × {p.iterations}, {time.perf_counter() - t:.0f} s",
              file=sys.stderr, flush=True)
    return _results[key]


def font(size: int = 13) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def fit_height(img: Image.Image, height: int, resample: Image.Resampling = Image.Resampling.LANCZOS) -> Image.Image:
    return img.resize((round(img.width * height / img.height), height), resample)


def wrap(text: str, width: int, f: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> str:
    """Greedy word wrap to `width` px, keeping the given line breaks."""
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength
    lines = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            if line and measure(f"{line} {word}", font=f) > width:
                lines.append(line)
                line = word
            else:
                line = f"{line} {word}" if line else word
        lines.append(line)
    return "\n".join(lines)


def with_text(img: Image.Image, text: str, above: bool, size: int, gap: int) -> Image.Image:
    """`img` on white with `text` wrapped to its width, below it (a caption) or above (a title)."""
    f = font(size)
    text = wrap(text, img.width - 2 * gap, f)
    # Pillow types the box as floats (an origin may be fractional); round up so that the text fits.
    text_h = math.ceil(ImageDraw.Draw(Image.new("RGB", (1, 1))).multiline_textbbox((0, 0), text, font=f)[3]) + 2 * gap
    out = Image.new("RGB", (img.width, img.height + text_h), "white")
    out.paste(img, (0, text_h if above else 0))
    ImageDraw.Draw(out).multiline_text((gap, gap if above else img.height + gap), text, fill="black", font=f)
    return out


def captioned(img: Image.Image, text: str) -> Image.Image:
    return with_text(img, text, above=False, size=13, gap=3)


def titled(text: str, img: Image.Image) -> Image.Image:
    return with_text(img, text, above=True, size=15, gap=8)


def concat(parts: Sequence[Image.Image], horizontal: bool, gap: int = 8) -> Image.Image:
    """Parts side by side (or one above the other), top/left aligned, with a white margin."""
    along = [p.width if horizontal else p.height for p in parts]
    across = max(p.height if horizontal else p.width for p in parts)
    length = sum(along) + gap * (len(parts) + 1)
    out = Image.new("RGB", (length, across + 2 * gap) if horizontal else (across + 2 * gap, length), "white")
    offset = gap
    for p, n in zip(parts, along):
        out.paste(p, (offset, gap) if horizontal else (gap, offset))
        offset += n + gap
    return out


def grid(parts: Sequence[Image.Image], columns: int) -> Image.Image:
    rows = [concat(parts[i:i + columns], horizontal=True) for i in range(0, len(parts), columns)]
    return concat(rows, horizontal=False, gap=0)


MAX_FIGURE_BYTES = 500 * 1024  # the figures live in git


def save_small(img: Image.Image, path: Path) -> int:
    """Saves as a palette PNG with as many colours (256, 128, 64) as fit MAX_FIGURE_BYTES: the
    figures are for the eye, and full-colour PNGs of painterly noise run to megabytes.
    Returns the file size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for colours in (256, 128, 64):
        img.quantize(colours, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
        if path.stat().st_size <= MAX_FIGURE_BYTES:
            break
    return path.stat().st_size


# --- the two figures -----------------------------------------------------------------------------

def quality_sheet(base: Params, shared: Path, cell: int) -> Image.Image:
    references = sorted((shared / "reference").glob("*.png"))
    unknown = [r.name for r in references if r.name not in CASES]
    if unknown:
        print(f"  no settings known for {', '.join(unknown)}; left out", file=sys.stderr)
    pairs = []
    for ref in (r for r in references if r.name in CASES):
        case = CASES[ref.name]
        ours = render(case.params(base, shared), ref.stem)
        pair = concat([fit_height(ours, cell), fit_height(images.load_image(ref), cell)], horizontal=True, gap=4)
        pairs.append(captioned(pair, f"{case.caption()}\nleft: this engine; right: published {ref.name}"))
    title = (f"Left of each pair: this engine, {base.size} px, {base.iterations} L-BFGS iterations at the final "
             f"size, multi-scale {_schedule_text(base)}, init {base.init}, {base.device}. Right: {PUBLISHED}. "
             f"Same weights (content {base.content_weight:g}, style {base.style_weight:g}, TV {base.tv_weight:g}) "
             f"and settings otherwise.")
    return titled(title, grid(pairs, columns=2))


def _schedule_text(p: Params) -> str:
    return "->".join(str(s) for s in p.scale_sizes()) if p.multiscale else "off"


@dataclass(frozen=True)
class Consistency:
    multiscale: bool
    gram: float  # gram_distance(small result, large result downscaled)
    rmse: float
    # Each result's Gram distance to the painting (at the small size): how far along the style is,
    # so a low distance between the two cannot come from both staying close to the photo.
    to_style: tuple[float, float]
    small: Image.Image
    large_down: Image.Image


def consistency(base: Params, shared: Path, small: int, large: int) -> list[Consistency]:
    out = []
    for multiscale in (True, False):
        p = CONSISTENCY_CASE.params(base, shared).with_changes(multiscale=multiscale)
        tag = f"multi-scale {'on' if multiscale else 'off'}"
        a = render(p.with_changes(size=small), f"consistency small, {tag}")
        b = render(p.with_changes(size=large), f"consistency large, {tag}")
        b_down = b.resize(a.size, Image.Resampling.LANCZOS)
        net = style_net(p)
        painting = images.resize_longest(images.load_image(p.styles[0]), round(small * p.style_scale))
        to_style = (gram_distance(a, painting, net), gram_distance(b_down, painting, net))
        out.append(Consistency(multiscale, gram_distance(a, b_down, net), pixel_rmse(a, b_down), to_style, a, b_down))
    return out


def consistency_figure(found: list[Consistency], base: Params, small: int, large: int, cell: int) -> Image.Image:
    rows = []
    for c in found:
        tag = "on" if c.multiscale else "off"
        diff = ImageChops.difference(c.small, c.large_down).point(lambda v: min(255, 3 * v))
        # Nearest-neighbour enlargement shows the small images' pixels as they are.
        tiles = [fit_height(im, cell, Image.Resampling.NEAREST) for im in (c.small, c.large_down, diff)]
        texts = [f"{small} px, multi-scale {tag} (to style {c.to_style[0]:.3f})",
                 f"{large} px scaled to {small}, multi-scale {tag} (to style {c.to_style[1]:.3f})",
                 f"|difference| x3. Gram distance {c.gram:.3f}, pixel RMSE {c.rmse:.1f}"]
        rows.append(concat([captioned(t, text) for t, text in zip(tiles, texts)], horizontal=True))
    title = (f"Resolution consistency: {CONSISTENCY_CASE.caption()}, {base.iterations} iterations at the final "
             f"size, init {base.init}, {base.device}. Lower distances: the small result predicts the large one.")
    return titled(title, concat(rows, horizontal=False, gap=0))


def markdown(found: list[Consistency], small: int, large: int) -> str:
    lines = [f"| multi-scale | Gram distance, {small} px vs {large} px ↓{small} | pixel RMSE (0..255) "
             f"| Gram distance to the style, {small} px / {large} px ↓{small} |",
             "| --- | --- | --- | --- |"]
    lines += [f"| {'on' if c.multiscale else 'off'} | {c.gram:.3f} | {c.rmse:.1f} "
              f"| {c.to_style[0]:.3f} / {c.to_style[1]:.3f} |" for c in found]
    return "\n".join(lines)


def machine(device: str) -> str:
    d = pick_device(device)
    name = torch.cuda.get_device_name(d) if d.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    return f"{name}, torch {torch.__version__}, {platform.system()} {platform.machine()}"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=256, help="sheet: result size (the references are 512)")
    ap.add_argument("--iterations", type=int, default=50,
                    help="sheet: iterations at the final size (references: 1000; GPU: 500)")
    ap.add_argument("--small", type=int, default=128, help="consistency: the preview size (GPU: 256)")
    ap.add_argument("--large", type=int, default=512, help="consistency: the full size (GPU: 1024)")
    ap.add_argument("--consistency-iterations", type=int, default=30,
                    help="consistency: iterations at the final size (GPU: 300)")
    ap.add_argument("--init", choices=("content", "noise"), default="content",
                    help="content converges in far fewer iterations; neural-style started from noise")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--cell", type=int, default=192, help="height of each image in the figures, px")
    ap.add_argument("--images", type=Path, default=TEST_IMAGES, help="the shared test images folder")
    ap.add_argument("--out", type=Path, default=ROOT / "docs", help="folder for the PNGs")
    ap.add_argument("--sheet", action=argparse.BooleanOptionalAction, default=True, help="make the sheet")
    ap.add_argument("--consistency", action=argparse.BooleanOptionalAction, default=True,
                    help="make the consistency figure")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    base = Params(size=args.size, iterations=args.iterations, init=args.init, device=args.device, multiscale=True)
    t0 = time.perf_counter()
    print(f"Machine: {machine(args.device)}")
    if args.sheet:
        path = args.out / "quality-sheet.png"
        n = save_small(quality_sheet(base, args.images, args.cell), path)
        print(f"wrote {path} ({n // 1024} KB)", flush=True)
    if args.consistency:
        cbase = base.with_changes(iterations=args.consistency_iterations)
        found = consistency(cbase, args.images, args.small, args.large)
        path = args.out / "consistency.png"
        n = save_small(consistency_figure(found, cbase, args.small, args.large, args.cell), path)
        print(f"wrote {path} ({n // 1024} KB)\n\n{markdown(found, args.small, args.large)}\n")
    print(f"Total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
