"""What the command lines share: one-line usage errors, a flag for every Params field (generated
from the dataclass, so no CLI can drift from it), and the progress bar.

`python -m engine`, `python -m gallery` and `python -m worker` all build on this; stdlib and
engine.params only, so `--help` answers without torch.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import fields
from typing import Any, Protocol, TextIO, runtime_checkable

from engine.memory import BUDGET_ENV, parse_bytes
from engine.params import HELP, PRESETS, Params, eta_seconds, preset, validate

# Flags whose name differs from the field, after neural-style's.
_FLAG_NAMES = {"preview_every": "--save-every"}
_LIST_ITEM_TYPES = {"style_blend": float, "style_masks": str, "style_layer_weights": float, "content_layers": str,
                    "style_layers": str}
_POSITIONAL = ("content", "styles")
_METAVARS = {"init_image": "PATH"}


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
            if f.name in _METAVARS:
                kwargs["metavar"] = _METAVARS[f.name]
        parser.add_argument(flag, **kwargs)


def _memory_amount(text: str) -> int:
    try:
        return parse_bytes(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_memory_budget(parser: argparse.ArgumentParser) -> None:
    """--memory-budget: what a run may use (it is tiled to fit; engine.memory), None when not given."""
    parser.add_argument("--memory-budget", type=_memory_amount, metavar="AMOUNT",
                        help=f"memory a run may use, e.g. 4GB, 1.5GB or 800MB; a larger run is evaluated in "
                             f"tiles (default: ${BUDGET_ENV}, else the device's free memory)")


def _show_default(value: Any) -> str:
    if isinstance(value, tuple):
        return " ".join(map(str, value)) or "equal"
    return str(value)


def params_from_args(args: argparse.Namespace, content: str, styles: Sequence[str]) -> Params:
    """Params from parsed flags: the preset (if any), then every flag given (--init-image also
    sets init to image). Raises ParamsError."""
    given = {f.name: getattr(args, f.name) for f in fields(Params)
             if f.name not in _POSITIONAL and hasattr(args, f.name)}
    given = {k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}
    if given.get("init_image") and "init" not in given:
        given["init"] = "image"  # --init-image PATH says where to start, as neural-style's -init_image
    base = preset(args.preset) if getattr(args, "preset", None) else Params()
    return validate(base.with_changes(content=content, styles=tuple(styles), **given))


class RunProgress(Protocol):
    """What the bar reads of engine.transfer.Progress (named by its shape: this module stays
    torch-free)."""

    iteration: int
    total: int
    size: int
    losses: dict[str, float]
    elapsed: float
    tile: int
    tiles: int


@runtime_checkable
class ClipProgress(Protocol):
    """engine.clip_transfer.FrameProgress: frame `frame` of `frames`, and the run's progress within it."""

    frame: int
    frames: int

    # A property: FrameProgress's field holds a Progress, which an attribute would have to match exactly.
    @property
    def inner(self) -> RunProgress: ...


class ProgressBar:
    """A run's progress on one line, redrawn in place on a terminal; a line every 10 % elsewhere
    (logs, CI). `label` names the run (the gallery's id) when there may be several. The bar and
    the ETA follow `params.work_done` (each scale weighed by its pixels), not the iteration count."""

    def __init__(self, params: Params, stream: TextIO = sys.stderr, width: int = 30, label: str = ""):
        self.params, self.stream, self.width = params, stream, width
        self.interactive = stream.isatty()
        self.label = f"{label}: " if label else ""
        self.started = time.monotonic()

    def __call__(self, reported: RunProgress | ClipProgress) -> None:
        """`reported`: the engine's Progress, or a clip's FrameProgress (engine.clip_transfer) around it."""
        frame, frames, pr = ((reported.frame, reported.frames, reported.inner) if isinstance(reported, ClipProgress)
                             else (0, 1, reported))
        # Non-terminals (logs, CI) get a line every 10 % instead of a redraw per iteration (or tile).
        step = max(1, pr.total // 10)
        tile = pr.tile
        if not self.interactive and (tile or pr.iteration % step and pr.iteration != pr.total):
            return
        done = self.params.work_done(pr.iteration, frame, frames)
        filled = round(self.width * done)
        # A clip's frames are runs of their own, each timed from its start: the bar times them all.
        elapsed = time.monotonic() - self.started if frame else pr.elapsed
        eta = eta_seconds(elapsed, done) or 0.0
        where = f"frame {frame}/{frames} " if frame else ""
        if tile:  # a tiled iteration in progress: the one after pr.iteration
            where += f"tile {tile}/{pr.tiles} of {pr.iteration + 1} "
        line = (f"{self.label}[{'#' * filled}{'.' * (self.width - filled)}] {where}{pr.iteration}/{pr.total} "
                f"{pr.size}px loss {pr.losses.get('total', 0):.4g} {elapsed:.1f}s eta {eta:.0f}s")
        self.stream.write(("\r" + line) if self.interactive else line + "\n")
        if self.interactive and pr.iteration == pr.total:
            self.stream.write("\n")
        self.stream.flush()
