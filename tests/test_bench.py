"""The benchmark's yardstick: with bench's flags, pastiche optimises this engine's objective."""
from __future__ import annotations

import pytest
import torch

from bench.__main__ import Judge, matched_objective, pastiche_artist
from engine import images
from engine.params import Params
from engine.transfer import to_image, to_tensor
from support.paths import CONTENT, STYLE


@pytest.fixture()
def small_inputs(tmp_path):
    """Inputs already at the working size, so neither side's resampling filter matters."""
    content, style = tmp_path / "content.png", tmp_path / "style.png"
    images.resize_longest(images.load_image(CONTENT), 64).save(content)
    images.resize_longest(images.load_image(STYLE), 64).save(style)
    return content, style


def pastiche_loss(args: list[str], image: torch.Tensor) -> float:
    """pastiche's own loss of an RGB 0..255 image, built the way its CLI builds it."""
    artist = pastiche_artist(args)
    bgr_mean = torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)
    artist.pastiche.data = image[:, [2, 1, 0]] - bgr_mean
    return float(artist._calc_loss().detach())


@pytest.mark.parametrize("weights", [{}, {"content_weight": 2.0, "style_weight": 1e4,
                                          "style_layer_weights": (1.0, 0.5, 0.2, 0.1, 2.0)}])
def test_pastiche_with_matched_flags_computes_our_loss(small_inputs, weights):
    content, style = small_inputs
    p = Params(content=str(content), styles=(str(style),), size=64, device="cpu", tv_weight=0.0, **weights)
    flags = ["-c", str(content), "-s", str(style), "-o", "unused.png", "--size", "64", "--device", "cpu",
             *matched_objective(p)]
    # Whole grey levels, so the image survives the trip through PIL that the judge takes.
    noise = torch.randint(0, 256, (1, 3, 48, 64), generator=torch.Generator().manual_seed(0)).float()
    photo = to_tensor(images.load_image(content), torch.device("cpu"))
    judge = Judge(p)
    for image in (noise, photo):
        ours, theirs = judge(to_image(image)), pastiche_loss(flags, image)
        assert theirs == pytest.approx(ours, rel=1e-4)
    assert judge(to_image(noise)) > 1.2 * judge(to_image(photo))  # two different points


def test_bench_accel_reports_each_variant_and_writes_its_sheet(tmp_path, monkeypatch):
    """The GPU probe is run on a lent machine with minutes to spare: it must work when one comes."""
    import bench.accel
    from engine.accel import Accel
    monkeypatch.setattr(bench.accel, "VARIANTS", (Accel(), Accel(channels_last=True), Accel(cuda_graph=True)))
    report = tmp_path / "accel.md"
    bench.accel.main(["--sizes", "32", "--steps", "1", "--full", "2", "--preview", "1", "--out", str(tmp_path),
                      "--write", str(report)])
    text = report.read_text()
    assert "| plain | " in text and "| channels_last | " in text
    assert "- not measured: cuda_graph: CUDA graphs need a CUDA device" in text
    assert "## Whole runs at 32 px, wall clock" in text
    assert "| plain | 32 | 2 | " in text
    assert "| plain, first time | 32 | 1 | " in text and "| plain, again | 32 | 1 | " in text
    assert (tmp_path / "variants-32.png").is_file()


def test_bench_without_pastiche_measures_the_engine_alone(tmp_path, monkeypatch):
    import bench.__main__ as bench_main
    monkeypatch.setattr(bench_main, "has_pastiche", lambda: False)
    report = tmp_path / "bench.md"
    bench_main.main(["--sizes", "32", "--steps", "1", "--rounds", "1", "--cli-steps", "2", "4", "--growth",
                     "--write", str(report)])
    text = report.read_text()
    assert "| this engine, `python -m engine` |" in text and "pastiche 1.6.0" not in text
    assert "pastiche is not installed here" in text and "Quality per second" not in text


def test_cli_speed_is_the_steady_state_one():
    from bench.__main__ import CliTimes

    # 2 s to start, the first 20 iterations 0.1 s dearer each than the 0.5 s of the later ones.
    t = CliTimes(start=2.0, low=2.0 + 20 * 0.6, high=2.0 + 20 * 0.6 + 60 * 0.5, start_iterations=0,
                 low_iterations=20, high_iterations=80, peak_mb=0)
    assert t.steady == pytest.approx(0.5)
    assert t.from_start == pytest.approx((20 * 0.6 + 60 * 0.5) / 80)  # what the old subtraction saw
    assert t.first_extra == pytest.approx(2.0)
