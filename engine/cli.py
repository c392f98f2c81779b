"""`python -m engine CONTENT STYLE [STYLE...] -o OUT.png`, in the tradition of neural-style; a clip
as CONTENT (an animated GIF or WebP, or a video: MP4, WebM, MOV; engine.clips) gives an animation
(`-o OUT.webp` or `.gif`; `--temporal-weight`, `--frame-iterations`).

Every Params field is a flag, generated from the dataclass so the CLI can never drift from it.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from engine.cli_args import OneLineParser, ProgressBar, add_memory_budget, add_param_arguments, params_from_args
from engine.params import Params, ParamsError

if TYPE_CHECKING:  # imported where used, so --help and bad flags answer without loading torch
    from engine.transfer import Progress, Result


def _build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m engine",
        description="Paint a photo in the style of one or more paintings (Gatys et al., VGG19).",
    )
    parser.add_argument("images", nargs="*", metavar="IMAGE", help="CONTENT STYLE [STYLE ...]")
    parser.add_argument("-o", "--output", help="where to write the result (PNG, parameters embedded)")
    parser.add_argument("--show", metavar="PNG", help="print the parameters stored in a result PNG and exit")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_param_arguments(parser)
    add_memory_budget(parser)
    return parser


def _show(path: str) -> int:
    from engine.images import ImageError
    from engine.pngmeta import PARAMS_KEY, read_metadata

    try:
        meta = read_metadata(path)
    except (ImageError, OSError) as e:
        return _fail(f"cannot read {path}: {e}")
    if PARAMS_KEY not in meta:
        return _fail(f"{path} carries no style-transfer parameters")
    print(json.dumps({k: json.loads(v) if k == PARAMS_KEY else v for k, v in meta.items()}, indent=2))
    return 0


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.show:
        return _show(args.show)
    if len(args.images) < 2 or not args.output:
        parser.error("give CONTENT STYLE [STYLE ...] and -o OUT.png (or --show PNG)")
    for path in [*args.images, *([args.init_image] if getattr(args, "init_image", "") else [])]:
        if not Path(path).is_file():
            return _fail(f"no such file: {path}")
    try:
        params = params_from_args(args, args.images[0], args.images[1:])
    except ParamsError as e:
        return _fail(str(e))
    from engine.clips import is_clip

    if is_clip(params.content):
        return _render_clip(params, Path(args.output), quiet=args.quiet)
    return _render(params, Path(args.output), quiet=args.quiet, memory_budget=args.memory_budget)


def _render_clip(params: Params, output: Path, quiet: bool) -> int:
    """A clip as content (animated GIF or WebP, or a video): every frame styled (engine/clip_transfer.py),
    written as an animation of the same frames and timing (.webp or .gif, by the output's name)."""
    from engine.clip_transfer import style_clip
    from engine.clips import read_clip, write_gif, write_webp
    from engine.images import ImageError
    from engine.transfer import OutOfMemory
    from engine.vgg import WeightsError

    writers = {".webp": write_webp, ".gif": write_gif}
    if output.suffix.lower() not in writers:
        return _fail(f"a clip's result is an animation: name it .webp or .gif, not {output.name}")
    try:
        clip = read_clip(params.content)

        def finished(k: int, frame: Result) -> None:
            if not quiet:
                print(f"frame {k + 1}/{len(clip.frames)} done", file=sys.stderr, flush=True)

        result = style_clip(params, clip, on_frame=finished)
    except (ImageError, WeightsError, OutOfMemory, ParamsError) as e:
        return _fail(str(e))
    except KeyboardInterrupt:
        return _fail("interrupted")
    output.parent.mkdir(parents=True, exist_ok=True)
    writers[output.suffix.lower()](result, output)
    if not quiet:
        print(f"wrote {output} ({len(result.frames)} frames, {result.seconds:.1f} s)", file=sys.stderr)
    return 0


def _render(params: Params, output: Path, quiet: bool, memory_budget: int | None = None) -> int:
    # Imported here so --help, --show and bad-flag errors answer without loading torch.
    from engine.images import ImageError
    from engine.pngmeta import ResultInfo, save_png
    from engine.transfer import OutOfMemory, run
    from engine.vgg import WeightsError

    bar = None if quiet else ProgressBar(params)

    def on_progress(pr: Progress) -> None:
        if bar:
            bar(pr)
        if pr.preview is not None and params.preview_every and pr.iteration % params.preview_every == 0:
            save_png(pr.preview, output.with_name(f"{output.stem}_{pr.iteration:04d}.png"),
                     ResultInfo(params.to_json()))

    try:
        result = run(params, on_progress=on_progress, memory_budget=memory_budget)
    except (ImageError, WeightsError, OutOfMemory, ParamsError) as e:
        return _fail(str(e))
    except KeyboardInterrupt:
        return _fail("interrupted")
    output.parent.mkdir(parents=True, exist_ok=True)
    save_png(result.image, output, ResultInfo.of_result(result, params.to_json()))
    if not quiet:
        print(f"wrote {output} ({result.image.width}x{result.image.height}) in {result.timings['total']:.1f}s "
              f"on {result.device}{f' ({result.evaluation})' if result.evaluation else ''}", file=sys.stderr)
    return 0

