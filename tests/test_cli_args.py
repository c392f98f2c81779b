"""engine/cli_args.py: what the three CLIs share: a flag for every Params field, one-line usage
errors, the memory budget, the progress bar."""
from __future__ import annotations

import argparse
import io
from dataclasses import fields

import pytest

from engine.cli_args import OneLineParser, ProgressBar, add_memory_budget, add_param_arguments, params_from_args
from engine.params import Params, ParamsError
from engine.transfer import Progress


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="studio")
    add_param_arguments(p)
    add_memory_budget(p)
    return p


def test_every_params_field_but_the_images_is_a_flag():
    flags = {a.dest for a in parser()._actions}
    assert {f.name for f in fields(Params)} - {"content", "styles"} <= flags


def test_flags_over_a_preset_and_init_image_means_start_from_it():
    args = parser().parse_args(["--preset", "draft", "--size", "96", "--style-layers", "conv1_1", "conv2_1",
                                "--init-image", "start.png", "--no-multiscale", "--memory-budget", "1.5GB"])
    p = params_from_args(args, "photo.jpg", ["painting.jpg"])
    assert (p.size, p.iterations, p.style_layers, p.multiscale) == (96, 100, ("conv1_1", "conv2_1"), False)
    assert (p.init, p.init_image) == ("image", "start.png")
    assert args.memory_budget == 1_500_000_000


def test_bad_usage_is_one_line_and_status_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        parser().parse_args(["--memory-budget", "lots"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1
    with pytest.raises(ParamsError, match="size"):
        params_from_args(parser().parse_args(["--size", "8"]), "photo.jpg", ["painting.jpg"])


def test_the_progress_bar_writes_a_line_every_tenth_off_a_terminal():
    out = io.StringIO()
    p = Params(size=64, iterations=20, multiscale=False)
    bar = ProgressBar(p, stream=out, label="run 3")
    for i in range(1, 21):
        bar(Progress(i, 20, 64, {"total": 1.0}, 0.1 * i))
    lines = out.getvalue().splitlines()
    assert 5 <= len(lines) <= 11 and all(line.startswith("run 3: ") for line in lines)
