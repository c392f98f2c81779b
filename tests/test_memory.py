"""engine.memory: the estimate's shape, and the refusal message."""
from __future__ import annotations

import pytest

from engine.memory import (
    budget_from_env,
    clip_bytes,
    clip_refusal,
    cpu_available_bytes,
    estimate_bytes,
    format_bytes,
    largest_size_that_fits,
    lbfgs_history,
    parse_bytes,
    plan,
    refusal,
    within_budget,
)
from engine.params import Params

GB = 1000**3


def test_estimate_grows_with_pixels_and_is_bounded_by_the_square() -> None:
    sizes = [estimate_bytes(Params(size=s)) for s in (256, 512, 1024, 2048)]
    assert sizes == sorted(sizes)
    # Activations and L-BFGS history scale with pixels: about 4x per doubling at large sizes.
    assert 3.5 < sizes[3] / sizes[2] < 4.1
    assert estimate_bytes(Params(size=1024), (1024, 512)) < estimate_bytes(Params(size=1024))
    assert estimate_bytes(Params(size=1024), (512, 1024)) == estimate_bytes(Params(size=1024), (1024, 512))


def test_what_the_estimate_depends_on() -> None:
    base = Params(size=1024)
    assert estimate_bytes(base.with_changes(optimizer="adam")) < estimate_bytes(base)  # no L-BFGS history
    shallow = base.with_changes(content_layers=("conv2_2",), style_layers=("conv1_1", "conv2_1"))
    assert estimate_bytes(shallow) < estimate_bytes(base)  # the network stops earlier
    # In a plausible range for a 1024 px L-BFGS run with VGG19 up to conv5_1.
    assert 3 * GB < estimate_bytes(base) < 12 * GB
    # On the CPU the deep layers' Winograd kernels come on top: 8 floats per weight of conv3_1 to
    # conv5_1, about 406 MB (measured: 1300 against 851 MB peak RSS for python -m engine, 256 px).
    extra = estimate_bytes(base.with_changes(device="cpu")) - estimate_bytes(base.with_changes(device="cuda"))
    assert 380e6 < extra < 520e6
    assert estimate_bytes(shallow.with_changes(device="cpu")) == estimate_bytes(shallow.with_changes(device="cuda"))


def test_refusal_only_when_even_the_smallest_tiles_do_not_fit() -> None:
    p = Params(size=2048)
    assert refusal(p, None) is None
    # 7.8 GB holds 2048 px in tiles (whole, it needs more than twice that).
    assert refusal(p, int(7.8 * GB), "cuda") is None
    found = plan(p, int(7.8 * GB))
    assert found.tiled and found.device_bytes <= 7.8 * GB < estimate_bytes(p)
    big = Params(size=16384, device="cpu")
    floor = plan(big, 0, (1024, 768)).device_bytes  # the smallest tiles
    message = refusal(big, 22 * GB, "cpu", (1024, 768))
    assert message == (f"Not enough memory: this run needs about {format_bytes(floor)} even in tiles, cpu has "
                       f"22.0 GB free; the largest size that would fit is 8192 px.")
    assert largest_size_that_fits(big, 22 * GB, (1024, 768)) == 8192
    assert plan(big.with_changes(size=8192), 22 * GB, (1024, 768)).fits(22 * GB)
    assert "free some memory" in refusal(p, 1000)


def test_memory_picks_tiles_under_a_budget() -> None:
    p = Params(size=4096, device="cpu")
    shape = (1024, 768)  # 4096 x 3072 px
    assert plan(p, None, shape) == plan(p, 100 * GB, shape) and not plan(p, None, shape).tiled
    found = [plan(p, budget * GB, shape) for budget in (40, 15, 12)]
    assert [f.tiled for f in found] == [True] * 3
    assert all(f.device_bytes <= budget * GB for f, budget in zip(found, (40, 15, 12)))
    # Less memory, smaller tiles and more of them; cores on the 16 px grid, halos as the layers need.
    assert found[0].tile > found[1].tile > found[2].tile and found[0].tiles < found[2].tiles
    assert all(f.tile % 16 == 0 and f.halo == 80 for f in found)
    assert found[0].evaluation == f"tiled, {found[0].tiles} tiles of {found[0].tile} px"
    # The whole image whenever it fits: at 2048 px in 20 GB.
    assert not plan(p.with_changes(size=2048), 20 * GB, shape).tiled


def test_l_bfgs_history_is_shorter_for_prints_and_kept_on_the_host_when_a_gpu_is_full() -> None:
    assert [lbfgs_history(side * side) for side in (512, 2048, 4096, 8192)] == [20, 20, 10, 5]
    shape = (1024, 768)
    on_gpu = Params(size=12288, device="cuda")
    found = plan(on_gpu, 24 * GB, shape, host_available=100 * GB)
    assert found.history == 5 and found.history_on_host and found.fits(24 * GB, 100 * GB)
    vector = 3 * 12288 * 9216 * 4  # bytes of one image-sized float vector
    assert found.host_bytes > 2 * 5 * vector  # the pairs, kept in RAM
    message = refusal(on_gpu, 24 * GB, "cuda", shape, host_available=10 * GB)
    assert message.startswith("Not enough memory: this run's L-BFGS history needs about ")
    assert "of RAM, and 10.0 GB is free; the largest size that would fit is 8192 px." in message
    assert not plan(on_gpu.with_changes(size=4096), 24 * GB, shape).history_on_host


def test_a_few_steps_hold_only_the_pairs_they_have_made() -> None:
    """What a benchmark's short run is compared with: the history's missing pairs left out."""
    found = plan(Params(size=2048), None, (1024, 768))
    vector = 3 * 2048 * 1536 * 4
    assert found.history == 20 and found.device_bytes_after(20) == found.device_bytes_after(99) == found.device_bytes
    assert 2 * 17 * vector <= found.device_bytes - found.device_bytes_after(3) <= 2 * 17 * vector * 1.5
    on_host = plan(Params(size=12288, device="cuda"), 24 * GB, (1024, 768), host_available=100 * GB)
    assert on_host.history_on_host and on_host.device_bytes_after(1) == on_host.device_bytes


@pytest.mark.parametrize("text, n", [("4GB", 4 * GB), ("1.5GB", 1_500_000_000), ("800MB", 800_000_000),
                                     ("2GiB", 2 * 1024**3), (" 512 mb ", 512_000_000), ("123", 123)])
def test_budgets_are_read_as_people_write_them(text: str, n: int) -> None:
    assert parse_bytes(text) == n


@pytest.mark.parametrize("text", ["", "lots", "4 GBs", "-1GB", "0", "1.5.2GB"])
def test_a_budget_that_is_not_an_amount_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not an amount of memory"):
        parse_bytes(text)


def test_the_budget_from_the_environment(monkeypatch) -> None:
    monkeypatch.delenv("STUDIO_MEMORY_BUDGET", raising=False)
    assert budget_from_env() is None
    monkeypatch.setenv("STUDIO_MEMORY_BUDGET", "1.5GB")
    assert budget_from_env() == 1_500_000_000
    assert within_budget(8 * GB, budget_from_env()) == 1_500_000_000
    assert within_budget(None, 1000) == 1000 and within_budget(None, None) is None


def test_a_clips_frames_count_in_the_hosts_memory() -> None:
    p = Params(size=512)
    full_hd = (1920, 1080)
    # The largest clip the uploads take: 240 frames decoded as they came (Pillow: 4 bytes a
    # pixel, measured 4.10 for 40 frames of 1920x1080), and input and result at 512x288.
    assert clip_bytes(p, full_hd, 240) == 240 * 4 * (1920 * 1080 + 2 * 512 * 288)
    assert clip_bytes(p, full_hd, 1) == 0
    cpu, cuda = p.with_changes(device="cpu"), p.with_changes(device="cuda")
    still, clip = (plan(cpu, None, full_hd, n, temporal=False).device_bytes for n in (1, 240))
    assert clip - still == clip_bytes(p, full_hd, 240)
    # On a GPU the frames stay in the host's memory, not the device's.
    assert plan(cuda, None, full_hd, 240, temporal=False) == plan(cuda, None, full_hd)
    floor = plan(cpu, 0, full_hd).device_bytes  # a still in the smallest tiles
    assert refusal(cpu, floor + 1000, "cpu", full_hd) is None
    assert "the largest size that would fit is 384 px" in refusal(cpu, floor + 1000, "cpu", full_hd, 2)
    assert "try a shorter or smaller clip" in refusal(cpu, floor + 1000, "cpu", full_hd, 240)
    assert clip_refusal(p, 3 * GB, full_hd, 240) is None
    assert clip_refusal(p, 1 * GB, full_hd, 240) == (
        "Not enough memory: this clip's 240 frames need about 2.3 GB of RAM, and 1.0 GB is free; "
        "try a shorter or smaller clip, or free some memory.")


@pytest.mark.parametrize("n, text", [(512, "512 bytes"), (1500, "1.5 KB"), (9.1e9, "9.1 GB"), (12e12, "12000.0 GB")])
def test_format_bytes(n: float, text: str) -> None:
    assert format_bytes(n) == text


def test_cpu_available_bytes() -> None:
    found = cpu_available_bytes()
    assert found is None or found > 0
