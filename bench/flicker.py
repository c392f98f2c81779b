"""`python -m bench.flicker`: how much a styled clip flickers with the temporal term and without.

    python -m bench.flicker [--size 128] [--frames 8] [--iterations 100] [--frame-iterations 40]
                            [--strip docs/flicker-strip.png] [--clip CLIP.gif|.webp|.mp4 ...]

Three clips made from ../shared/images: a pan across tubingen (4 px a frame), a slow zoom into
golden_gate (2 % a frame), and a hand-held one: a zoom into tubingen (1.5 % a frame) with a
seeded random shake of up to 6 px, through a GIF's 256 colours and back, as a phone's GIF would
come. `--clip` adds clips of your own (their first --frames frames). Each is styled with
starry_night twice, on the same budget: `temporal_weight` at its default, and 0 (every frame on its own). The figure
(engine.flow.flicker) is the mean absolute difference, 0..255, between each output frame and
the previous output frame warped by the *input's* flow, over the pixels where that flow is
reliable; the input clip's own figure is printed as the floor. The strip shows the first frames
of the pan, both ways. Figures, not assertions.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

from PIL import Image

from engine import images
from engine.clip_transfer import style_clip
from engine.clips import Clip, gif_bytes, read_clip
from engine.flow import flicker
from engine.params import Params
from harness.paths import TEST_IMAGES


def pan(frames: int, step: int = 4) -> Clip:
    photo = Image.open(TEST_IMAGES / "content" / "tubingen.jpg").convert("RGB").resize((480, 360))
    return Clip([photo.crop((40 + k * step, 60, 40 + k * step + 320, 60 + 240)) for k in range(frames)],
                [100] * frames)


def zoom(frames: int, rate: float = 0.02) -> Clip:
    photo = Image.open(TEST_IMAGES / "content" / "golden_gate.jpg").convert("RGB").resize((480, 320))
    out = []
    for k in range(frames):
        w, h = 480 / (1 + rate) ** k, 320 / (1 + rate) ** k
        box = ((480 - w) / 2, (320 - h) / 2, (480 + w) / 2, (320 + h) / 2)
        out.append(photo.resize((360, 240), Image.Resampling.LANCZOS, box=box))
    return Clip(out, [100] * frames)


def handheld(frames: int, rate: float = 0.015, shake: float = 3.0, seed: int = 0) -> Clip:
    photo = Image.open(TEST_IMAGES / "content" / "tubingen.jpg").convert("RGB").resize((480, 360))
    rng = random.Random(seed)
    x = y = 0.0
    out = []
    for k in range(frames):
        # A random walk held within two steps of the centre: a hand's drift, not a pan.
        x = max(-2 * shake, min(2 * shake, x + rng.uniform(-shake, shake)))
        y = max(-2 * shake, min(2 * shake, y + rng.uniform(-shake, shake)))
        w, h = 400 / (1 + rate) ** k, 300 / (1 + rate) ** k
        box = (240 + x - w / 2, 180 + y - h / 2, 240 + x + w / 2, 180 + y + h / 2)
        out.append(photo.resize((320, 240), Image.Resampling.LANCZOS, box=box))
    return read_clip(gif_bytes(Clip(out, [80] * frames)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.flicker", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=100, help="the first frame's")
    parser.add_argument("--frame-iterations", type=int, default=40, help="each later frame's")
    parser.add_argument("--strip", type=Path, help="write the pan's first frames, both ways, here (PNG)")
    parser.add_argument("--clip", type=Path, nargs="+", default=[], help="measure these clips too")
    args = parser.parse_args(argv)
    base = Params(styles=(str(TEST_IMAGES / "style" / "starry_night.jpg"),), size=args.size, iterations=args.iterations,
                  frame_iterations=args.frame_iterations, multiscale=False)
    print(f"{args.frames} frames at {args.size} px, {args.iterations} iterations for the first and "
          f"{args.frame_iterations} for each later one, starry_night, {os.cpu_count()} cores.\n")
    print("| clip | input's own | temporal_weight 0 | temporal_weight " f"{base.temporal_weight:g} | ratio | time (s), 0 / on |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    strips = []
    clips = [("pan, 4 px a frame", pan(args.frames)), ("zoom, 2 % a frame", zoom(args.frames)),
             ("hand-held GIF: zoom 1.5 % a frame, shake", handheld(args.frames))]
    for path in args.clip:
        whole = read_clip(path)
        clips.append((path.name, Clip(whole.frames[:args.frames], whole.durations_ms[:args.frames])))
    for name, clip in clips:
        size = images.fit_within(*clip.size, args.size)
        inputs = [f.resize(size, Image.Resampling.LANCZOS) for f in clip.frames]
        figures, seconds, outs = [], [], []
        for weight in (0.0, base.temporal_weight):
            t0 = time.perf_counter()
            out = style_clip(base.with_changes(temporal_weight=weight), clip)
            seconds.append(time.perf_counter() - t0)
            figures.append(flicker(out.frames, inputs))
            outs.append(out.frames)
        strips.append(outs)
        print(f"| {name} | {flicker(inputs, inputs):.2f} | {figures[0]:.2f} | {figures[1]:.2f} | "
              f"{figures[1] / figures[0]:.2f} | {seconds[0]:.0f} / {seconds[1]:.0f} |", flush=True)
    if args.strip:
        loose, steady = strips[0]
        shown = min(5, len(loose))
        w, h = loose[0].size
        sheet = Image.new("RGB", (w * shown, h * 2 + 4), "white")
        for k in range(shown):
            sheet.paste(loose[k], (k * w, 0))
            sheet.paste(steady[k], (k * w, h + 4))
        sheet.save(args.strip)
        print(f"\n{args.strip}: the pan's first {shown} frames, temporal_weight 0 above, on below.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
