"""The benchmark's yardstick: with bench's flags, pastiche optimises this engine's objective."""
from __future__ import annotations

import pytest
import torch

from bench.measure import Judge, matched_objective, pastiche_artist
from engine import images
from engine.params import Params
from engine.transfer import to_image, to_tensor
from harness.paths import CONTENT, STYLE


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
@pytest.mark.slow
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
                      "--whole", "plain", "cuda_graph", "--write", str(report)])
    text = report.read_text()
    assert "| plain | " in text and "| channels_last | " in text
    row = next(line for line in text.splitlines() if line.startswith("| channels_last | "))
    # s/iteration, × its floor, its own floor (channels-last too), × that floor, × plain, ...
    iteration, _, own_floor, own_ratio = (float(cell) for cell in row.split("|")[2:6])
    assert own_ratio == pytest.approx(iteration / own_floor, rel=0.01)
    assert "- not measured: cuda_graph: CUDA graphs need a CUDA device" in text
    assert "## Whole runs at 32 px, wall clock" in text
    assert "| plain | 32 | 2 | " in text
    assert "| plain, first time | 32 | 1 | " in text and "| plain, again | 32 | 1 | " in text
    # A whole run that cannot run is a row saying so, and the probe goes on.
    assert "| cuda_graph | 32 | 2 | failed: ValueError: accel cuda_graph: CUDA graphs need a CUDA device" in text
    assert "| cuda_graph, again | 32 | 1 | failed: " in text
    assert (tmp_path / "variants-32.png").is_file()


@pytest.mark.slow
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
    from bench.measure import CliTimes

    # 2 s to start, the first 20 iterations 0.1 s dearer each than the 0.5 s of the later ones.
    t = CliTimes(start=2.0, low=2.0 + 20 * 0.6, high=2.0 + 20 * 0.6 + 60 * 0.5, start_iterations=0,
                 low_iterations=20, high_iterations=80, peak_mb=0)
    assert t.steady == pytest.approx(0.5)
    assert t.from_start == pytest.approx((20 * 0.6 + 60 * 0.5) / 80)  # what the old subtraction saw
    assert t.first_extra == pytest.approx(2.0)


def test_bench_size_reports_time_peak_and_the_estimate(tmp_path):
    import bench.size

    report = tmp_path / "size.md"
    bench.size.main(["--sizes", "32", "48", "--steps", "2", "--warmup", "1", "--write", str(report)])
    rows = [line.split("|")[1:-1] for line in report.read_text().splitlines() if line.startswith("| 32 |")
            or line.startswith("| 48 |")]
    assert len(rows) == 2
    for size, pixels, iteration, whole, later, reserved, estimate, ratio in rows:
        assert int(pixels) == int(size) * int(size) * 3 // 4  # tubingen is 4:3
        assert float(iteration) > 0 and float(whole) >= float(later) and reserved.strip() == ""  # no CUDA here
        assert float(estimate) > 0 and float(ratio) > 0


@pytest.mark.slow
def test_bench_workers_times_a_preset_one_job_at_a_time(capsys):
    import bench.workers

    # Two scales (128 → 256), two iterations each: a preview at the end of the first.
    bench.workers.main(["--preset", "balanced", "--size", "256", "--iterations", "2", "--jobs", "2",
                        "--one-by-one", "--layouts", "auto"])
    out = capsys.readouterr().out
    assert "2 balanced jobs (256 px, scales 128 → 256, 2 iterations a scale" in out and "one by one" in out
    row = next(line for line in out.splitlines() if line.startswith("| 1 worker on auto |"))
    _, wall, _, median, first_progress, first_preview, back, submit_to_saved, outside = row.split("|")[1:-1]
    assert 0 < float(first_progress) <= float(first_preview) <= float(median)
    # One by one: a job waits for no other, only for the worker's next look at the queue (0.5 s), so
    # submit → saved is about its own duration (queued at once here, the second took twice that).
    assert float(median) <= float(submit_to_saved) < float(median) + 1.5
    assert float(wall) >= 2 * float(median)


def test_bench_cancel_times_both_ways(capsys):
    import bench.cancel

    bench.cancel.main(["--size", "64", "--after", "0"])
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines() if "iterations" in line]
    assert [label.strip() for label, _ in rows] == ["between iterations only", "within iterations too (default)"]
    assert all(float(seconds) >= 0 for _, seconds in rows)
