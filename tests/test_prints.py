"""Making a print in the engine and through the command lines: a run starts from an image
(resized to its first scale), multi-scale runs only the scales above the result it grows from,
and --init-image / --memory-budget reach the engine from each CLI."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.cli_args import OneLineParser, add_param_arguments, params_from_args
from engine.memory import estimate_bytes
from engine.params import Params
from engine.transfer import run
from gallery import Gallery
from harness.paths import CONTENT, ROOT, STYLE

P = Params(content=str(CONTENT), styles=(str(STYLE),), size=64, iterations=2, device="cpu", multiscale=False)


@pytest.fixture
def red(tmp_path: Path) -> Path:
    path = tmp_path / "red.png"
    Image.new("RGB", (20, 15), (220, 30, 30)).save(path)
    return path


def test_a_run_starts_from_its_init_image_at_the_first_scale(red: Path, monkeypatch) -> None:
    monkeypatch.setattr("engine.params.MULTISCALE_MIN_SIZE", 32)
    sizes = []
    p = P.with_changes(init="image", init_image=str(red), iterations=1, multiscale=True, multiscale_from=32)
    result = run(p, on_progress=lambda pr: sizes.append(pr.size))
    assert sizes == [64]  # 32 and below are the result it grew from
    # One L-BFGS step moves no pixel more than 4 grey levels (engine.lbfgs.FIRST_STEP): still red.
    pixels = np.asarray(result.image, dtype=float)
    assert result.image.size == (64, 48) and np.abs(pixels - (220, 30, 30)).max() <= 4
    sizes.clear()
    run(p.with_changes(multiscale_from=0), on_progress=lambda pr: sizes.append(pr.size))
    assert sizes == [32, 64]


def parsed(*argv: str) -> Params:
    parser = OneLineParser()
    add_param_arguments(parser)
    return params_from_args(parser.parse_args(list(argv)), str(CONTENT), [str(STYLE)])


def test_init_image_flag_sets_init(red: Path) -> None:
    p = parsed("--init-image", str(red), "--multiscale-from", "512")
    assert (p.init, p.init_image, p.multiscale_from) == ("image", str(red), 512)
    assert parsed().init_image == "" and parsed().init == "content"


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_the_engines_cli_makes_a_tiled_print_from_an_image(tmp_path: Path, red: Path) -> None:
    out = tmp_path / "print.png"
    r = cli("engine", str(CONTENT), str(STYLE), "--init-image", str(red), "--size", "128", "--iterations", "1",
            "--no-multiscale", "--device", "cpu", "--memory-budget", "800MB", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "(winograd, tiled, " in r.stderr  # the budget is below what the whole image needs
    shown = json.loads(cli("engine", "--show", str(out)).stdout)["studio:params"]
    assert (shown["init"], shown["init_image"]) == ("image", str(red))
    for bad in (["--memory-budget", "lots"], ["--init-image", str(tmp_path / "missing.png")]):
        r = cli("engine", str(CONTENT), str(STYLE), "-o", str(out), *bad)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_the_worker_and_gallery_clis_take_an_init_image(tmp_path: Path, red: Path) -> None:
    data = tmp_path / "data"
    # Just less than the whole image needs (at 256 px, most of it is the weights): the worker
    # takes the run and the engine evaluates it in tiles.
    budget = estimate_bytes(P.with_changes(size=256), Image.open(CONTENT).size) - 1
    r = cli("gallery", "--data", str(data), "submit", str(CONTENT), str(STYLE), "--init-image", str(red),
            "--size", "32")
    assert r.returncode == 0, r.stderr
    r = cli("worker", "--data", str(data), "run", str(CONTENT), str(STYLE), "--init-image", str(red), "--size", "256",
            "--iterations", "1", "--no-multiscale", "--device", "cpu", "--memory-budget", str(budget))
    assert r.returncode == 0, r.stderr
    with Gallery(data) as g:
        queued, done = sorted(g.list_runs(), key=lambda run: run.id)
        for found in (queued, done):
            assert found.params.init == "image" and g.get_input(found.init_sha256).width == 20
        assert done.status == "done" and done.evaluation.startswith("winograd, tiled, ") and done.tiles > 1
