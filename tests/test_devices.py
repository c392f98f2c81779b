"""engine/devices.py: the device names a run may ask for, and GPUs counted without torch."""
from __future__ import annotations

from pathlib import Path

import pytest

from engine.devices import DEVICES, MAX_GPUS, PATTERN, gpu_count, gpu_device, gpu_index, is_device
from engine.params import Params, validation_errors


@pytest.mark.parametrize("value", ["auto", "cpu", "cuda", "cuda:0", "cuda:7", "cuda:10", "cuda:99"])
def test_names_a_run_may_ask_for(value: str) -> None:
    assert is_device(value)


@pytest.mark.parametrize("value", ["", "gpu", "tpu", "CUDA", "CUDA:1", "cuda:", "cuda:x", "cuda:-1", "cuda:01",
                                   "cuda:00", "cuda:100", " cuda", "cuda:1 ", "cpu:0", "auto:1", None, 1, ("cuda",)])
def test_anything_else_is_not_a_device(value: object) -> None:
    assert not is_device(value)


def test_the_pattern_names_each_gpu_below_max_gpus_once() -> None:
    # Every spelling of N up to three digits, leading zeros included: the pattern takes exactly
    # one per GPU, gpu_device's, for N below MAX_GPUS, so the queue can match names as text.
    spelt = {f"cuda:{n:0{width}d}" for n in range(1000) for width in (1, 2, 3)}
    assert {name for name in spelt if PATTERN.fullmatch(name)} == {gpu_device(n) for n in range(MAX_GPUS)}
    assert all(PATTERN.fullmatch(name) for name in DEVICES)


def test_gpu_index_reads_n_back() -> None:
    assert [gpu_index(gpu_device(n)) for n in (0, 3, MAX_GPUS - 1)] == [0, 3, MAX_GPUS - 1]
    assert [gpu_index(name) for name in DEVICES] == [None, None, None]


def test_params_take_the_same_names_and_say_what_n_may_be() -> None:
    def error(device: str) -> str | None:
        return validation_errors(Params(content="c.png", styles=("s.png",), device=device)).get("device")

    assert error("cuda:99") is None and error("auto") is None
    assert error("tpu") == "must be one of auto, cpu, cuda or cuda:N (one GPU of several), got 'tpu'"
    assert error("cuda:100") == ("must be one of auto, cpu, cuda or cuda:N (one GPU of several), got 'cuda:100'; "
                                 "N is 0 to 99, without leading zeros")


@pytest.mark.parametrize("visible, count", [("0", 1), ("0,1,3", 3), ("GPU-5c1f,GPU-77ab", 2), ("", 0),
                                            ("-1", 0), (" 2 , ,", 1)])
def test_gpus_counted_from_cuda_visible_devices(visible: str, count: int, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "nvidia0").touch()  # the variable wins over the driver's files
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert gpu_count(tmp_path) == count


def test_gpus_counted_from_the_drivers_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert gpu_count(tmp_path) == 0
    # One file per GPU; the driver's others (nvidiactl, nvidia-uvm, nvidia-modeset) are not GPUs.
    for name in ("nvidia0", "nvidia1", "nvidia12", "nvidiactl", "nvidia-uvm", "nvidia-modeset"):
        (tmp_path / name).touch()
    assert gpu_count(tmp_path) == 3

