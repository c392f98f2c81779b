"""engine.memory: the estimate's shape, and the refusal message."""
from __future__ import annotations

import pytest

from engine.memory import (clip_bytes, clip_refusal, cpu_available_bytes, estimate_bytes, format_bytes,
                           largest_size_that_fits, refusal)
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


def test_refusal_message() -> None:
    p = Params(size=2048)
    assert refusal(p, None) is None
    assert refusal(Params(size=256), 8 * GB, "cuda") is None
    message = refusal(p, int(7.8 * GB), "cuda")
    need = format_bytes(estimate_bytes(p))
    assert message == f"Not enough memory: this run needs about {need}, cuda has 7.8 GB free; try a size of 1280 or less."
    assert largest_size_that_fits(p, int(7.8 * GB)) == 1280
    assert estimate_bytes(p.with_changes(size=1280)) <= 7.8 * GB < estimate_bytes(p.with_changes(size=1536))
    assert "free some memory" in refusal(p, 1000)


def test_a_clips_frames_count_in_the_hosts_memory() -> None:
    p = Params(size=512)
    full_hd = (1920, 1080)
    # The largest clip the uploads take: 240 frames decoded as they came (Pillow: 4 bytes a
    # pixel, measured 4.10 for 40 frames of 1920x1080), and input and result at 512x288.
    assert clip_bytes(p, full_hd, 240) == 240 * 4 * (1920 * 1080 + 2 * 512 * 288)
    assert clip_bytes(p, full_hd, 1) == 0
    still, clip = (estimate_bytes(p.with_changes(device="cpu"), full_hd, n) for n in (1, 240))
    assert clip - still == clip_bytes(p, full_hd, 240)
    # On a GPU the frames stay in the host's memory, not the device's.
    assert estimate_bytes(p.with_changes(device="cuda"), full_hd, 240) == estimate_bytes(p.with_changes(device="cuda"), full_hd)
    cpu = p.with_changes(device="cpu")
    assert refusal(cpu, still + 1000, "cpu", full_hd) is None
    assert "try a size of 384 or less" in refusal(cpu, still + 1000, "cpu", full_hd, 2)
    assert "try a shorter or smaller clip" in refusal(cpu, still + 1000, "cpu", full_hd, 240)
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
