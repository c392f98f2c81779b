"""Parameter sweeps: one or two parameters, a few values each, queued as one batch and shown as a
grid. The axes are not stored anywhere: the grid is rebuilt from whichever parameters differ
between the batch's runs, so a reloaded page (or another tab) draws the same grid."""
from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from typing import Any

from engine.params import Params, validation_errors
from gallery import Run

# Numeric parameters where trying a few values side by side is the usual question.
SWEEPABLE: dict[str, type] = {
    "style_weight": float, "content_weight": float, "tv_weight": float, "iterations": int,
    "size": int, "style_scale": float, "learning_rate": float, "seed": int,
}
MAX_VALUES = 6
MAX_RUNS = 16  # a sweep shares the queue with everyone else


def parse_values(text: str, kind: type) -> tuple[list[Any], str | None]:
    """"1e3, 1e4 1e5" -> [1000.0, 10000.0, 100000.0]; or an error message."""
    tokens = [t for t in re.split(r"[,;\s]+", text.strip()) if t]
    if not tokens:
        return [], "enter one or more values, separated by commas"
    values: list[Any] = []
    for token in tokens:
        try:
            number = float(token)
        except ValueError:
            return [], f"{token!r} is not a number"
        if kind is int:
            if not number.is_integer():
                return [], f"{token!r} is not a whole number"
            number = int(number)
        if number not in values:
            values.append(number)
    if len(values) > MAX_VALUES:
        return [], f"at most {MAX_VALUES} values, got {len(values)}"
    return values, None


def expand(base: Params, axes: Sequence[tuple[str, Sequence[Any]]]) -> list[Params]:
    """Every combination of the axes' values applied to `base`, first axis slowest."""
    names = [name for name, _ in axes]
    return [base.with_changes(**dict(zip(names, combo)))
            for combo in itertools.product(*(values for _, values in axes))]


def sweep_errors(base: Params, axes: Sequence[tuple[str, Sequence[Any]]]) -> dict[str, str]:
    """The engine's message for the first bad value of each axis, keyed by the axis' field.
    Errors of the other settings are reported by the form itself."""
    errors: dict[str, str] = {}
    total = 1
    for _, values in axes:
        total *= max(1, len(values))
    if total > MAX_RUNS:
        errors["sweep"] = f"{total} runs is too many for one sweep; at most {MAX_RUNS}"
    for name, values in axes:
        for value in values:
            message = validation_errors(base.with_changes(**{name: value}), need_images=False).get(name)
            if message:
                errors[name] = message
                break
    return errors


def differing_fields(params: Sequence[Params]) -> list[str]:
    """Fields whose values are not all equal, in Params' field order."""
    if len(params) < 2:
        return []
    dicts = [p.to_dict() for p in params]
    return [f for f in dicts[0] if any(d[f] != dicts[0][f] for d in dicts[1:])]


def grid(runs: Sequence[Any]) -> tuple[list[str], list[Any], list[Any], dict[tuple[Any, Any], Any]]:
    """Lays a batch out: (axes, row values, column values, {(row, col): run}). With one axis
    there is a single row (row value None); with none, one cell per run."""
    axes = differing_fields([r.params for r in runs])[:2]
    def value(run: Run, i: int) -> Any:
        return getattr(run.params, axes[i]) if i < len(axes) else None
    rows = sorted({value(r, 0) for r in runs}, key=_sort_key) if len(axes) == 2 else [None]
    col_axis = 1 if len(axes) == 2 else 0
    cols = sorted({value(r, col_axis) for r in runs}, key=_sort_key)
    cells: dict[tuple[Any, Any], Any] = {}
    for run in runs:
        row = value(run, 0) if len(axes) == 2 else None
        cells[(row, value(run, col_axis))] = run
    if not axes:
        cols = [r.id for r in runs]
        cells = {(None, r.id): r for r in runs}
    return axes, rows, cols, cells


def _sort_key(v: Any) -> tuple[int, Any]:
    return (0, v) if isinstance(v, (int, float)) else (1, str(v))
