"""`python -m engine CONTENT STYLE [STYLE...] -o OUT.png`, in the tradition of neural-style.

Every Params field is a flag, generated from the dataclass so the CLI can never drift from it.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, Sequence

from engine.params import HELP, PRESETS, Params, ParamsError, preset, validate

# Flags whose name differs from the field, after neural-style's.
_FLAG_NAMES = {"preview_every": "--save-every"}
_LIST_ITEM_TYPES = {"style_blend": float, "style_layer_weights": float, "content_layers": str, "style_layers": str}
_POSITIONAL = ("content", "styles")


class OneLineParser(argparse.ArgumentParser):
    """Bad usage gives exit code 2 and one line, not a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_param_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds a flag for every Params field except the images; unset flags stay out of the namespace."""
    parser.add_argument("--preset", choices=list(PRESETS), default=argparse.SUPPRESS,
                        help="start from a named preset; other flags override it")
    for f in fields(Params):
        if f.name in _POSITIONAL:
            continue
        flag = _FLAG_NAMES.get(f.name, "--" + f.name.replace("_", "-"))
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS,
                                  "help": f"{HELP[f.name]} (default: {_show_default(f.default)})"}
        if isinstance(f.default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif isinstance(f.default, tuple):
            kwargs.update(nargs="+", type=_LIST_ITEM_TYPES[f.name], metavar=f.name.split("_")[-1].upper())
        else:
            kwargs["type"] = type(f.default)
        parser.add_argument(flag, **kwargs)


def _show_default(value: Any) -> str:
    if isinstance(value, tuple):
        return " ".join(map(str, value)) or "equal"
    return str(value)


def params_from_args(args: argparse.Namespace, content: str, styles: Sequence[str]) -> Params:
    """Params from parsed flags: the preset (if any), then every flag given. Raises ParamsError."""
    given = {f.name: getattr(args, f.name) for f in fields(Params)
             if f.name not in _POSITIONAL and hasattr(args, f.name)}
    given = {k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}
    base = preset(args.preset) if getattr(args, "preset", None) else Params()
    return validate(base.with_changes(content=content, styles=tuple(styles), **given))


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
    return parser


class ProgressBar:
    def __init__(self, stream=sys.stderr, width: int = 30):
        self.stream, self.width = stream, width
        self.interactive = stream.isatty()

    def __call__(self, pr) -> None:
        # Non-terminals (logs, CI) get a line every 10 % instead of a redraw per iteration.
        step = max(1, pr.total // 10)
        if not self.interactive and pr.iteration % step and pr.iteration != pr.total:
            return
        filled = round(self.width * pr.iteration / pr.total)
        eta = pr.elapsed / pr.iteration * (pr.total - pr.iteration)
        line = (f"[{'#' * filled}{'.' * (self.width - filled)}] {pr.iteration}/{pr.total} "
                f"{pr.size}px loss {pr.losses.get('total', 0):.4g} {pr.elapsed:.1f}s eta {eta:.0f}s")
        self.stream.write(("\r" + line) if self.interactive else line + "\n")
        if self.interactive and pr.iteration == pr.total:
            self.stream.write("\n")
        self.stream.flush()


def _show(path: str) -> int:
    from engine.images import ImageError
    from engine.pngmeta import read_metadata, PARAMS_KEY

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
    for path in args.images:
        if not Path(path).is_file():
            return _fail(f"no such file: {path}")
    try:
        params = params_from_args(args, args.images[0], args.images[1:])
    except ParamsError as e:
        return _fail(str(e))
    return _render(params, Path(args.output), quiet=args.quiet)


def _render(params: Params, output: Path, quiet: bool) -> int:
    # Imported here so --help, --show and bad-flag errors answer without loading torch.
    from engine.images import ImageError
    from engine.pngmeta import save_png
    from engine.transfer import OutOfMemory, run
    from engine.vgg import WeightsError

    bar = None if quiet else ProgressBar()

    def on_progress(pr) -> None:
        if bar:
            bar(pr)
        if pr.preview is not None and params.preview_every and pr.iteration % params.preview_every == 0:
            save_png(pr.preview, output.with_name(f"{output.stem}_{pr.iteration:04d}.png"), params.to_json())

    try:
        result = run(params, on_progress=on_progress)
    except (ImageError, WeightsError, OutOfMemory, ParamsError) as e:
        return _fail(str(e))
    except KeyboardInterrupt:
        return _fail("interrupted")
    output.parent.mkdir(parents=True, exist_ok=True)
    save_png(result.image, output, params.to_json(), result_metadata(result))
    if not quiet:
        print(f"wrote {output} ({result.image.width}x{result.image.height}) in {result.timings['total']:.1f}s "
              f"on {result.device}", file=sys.stderr)
    return 0


def result_metadata(result) -> dict[str, str]:
    """What a result PNG records besides the params: which weights, where, how long, final losses."""
    return {
        "studio:weights": f"{result.weights_name} sha256:{result.weights_sha256}",
        "studio:device": result.device,
        "studio:timings": json.dumps({k: round(v, 3) for k, v in result.timings.items()}),
        "studio:losses": json.dumps(result.losses),
    }
