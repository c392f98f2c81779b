"""Clips styled with the real engine at 64 px: the temporal term lowers the flicker figure on a
known pan; frames and timing are kept; a run continues after the frames it already has; the
style Grams are computed once a clip."""
from __future__ import annotations

import pytest
from PIL import Image

from engine.clip_transfer import style_clip
from engine.clips import Clip
from engine.flow import flicker
from engine.transfer import Reuse
from harness.paths import CONTENT, STYLE
from support.images import pan
from support.runs import tiny_params

FRAMES = 4


def params(**changes):
    settings = {"size": 64, "iterations": 40, "frame_iterations": 15, "init": "noise", **changes}
    return tiny_params(CONTENT, (STYLE,), **settings)


@pytest.mark.slow
def test_the_temporal_term_lowers_flicker() -> None:
    clip = pan()
    steady = style_clip(params(), clip)
    loose = style_clip(params(temporal_weight=0.0), clip)
    assert len(steady.frames) == FRAMES and steady.durations_ms == clip.durations_ms
    assert steady.frames[0].size == (64, 48)
    inputs = [f.resize((64, 48), Image.LANCZOS) for f in clip.frames]
    assert flicker(steady.frames, inputs) < 0.9 * flicker(loose.frames, inputs)  # 5.8 against 7.9 here


@pytest.mark.slow
def test_a_clip_continues_after_its_finished_frames() -> None:
    clip = pan()
    computed: list[int] = []
    first = style_clip(params(), Clip(clip.frames[:2], clip.durations_ms[:2]))
    rest = style_clip(params(), clip, on_frame=lambda k, result: computed.append(k), done=first.frames)
    assert computed == [2, 3] and len(rest.frames) == FRAMES and rest.frames[:2] == first.frames


def test_the_network_and_style_targets_are_made_once_a_clip() -> None:
    reuse = Reuse()
    styled = style_clip(params(iterations=4, frame_iterations=2), pan(), reuse=reuse)
    # One scale at 64 px. Each was made once a frame before.
    assert len(styled.frames) == FRAMES and reuse.computed == 1 and reuse.built == 1
    two_scales = Reuse()
    style_clip(params(size=256, multiscale=True, iterations=1, frame_iterations=1), pan(), reuse=two_scales)
    assert two_scales.computed == 2  # 128 and 256 px for the first frame; the later ones reuse 256 px
    assert two_scales.built == 1


@pytest.mark.slow
def test_the_cli_turns_a_gif_into_an_animation(tmp_path) -> None:
    import subprocess
    import sys

    from engine.clips import read_clip, write_gif
    from harness.paths import ROOT

    gif = write_gif(pan(), tmp_path / "pan.gif")
    out = tmp_path / "out.webp"
    proc = subprocess.run([sys.executable, "-m", "engine", str(gif), str(STYLE), "-o", str(out), "--size", "32",
                           "--iterations", "3", "--frame-iterations", "2", "--no-multiscale", "--device", "cpu",
                           "--temporal-weight", "1000"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert f"frame {FRAMES}/{FRAMES} done" in proc.stderr
    styled = read_clip(out)
    assert len(styled.frames) == FRAMES and styled.durations_ms == pan().durations_ms and styled.size == (32, 24)
    bad = subprocess.run([sys.executable, "-m", "engine", str(gif), str(STYLE), "-o", str(tmp_path / "x.png")],
                         cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "name it .webp or .gif" in bad.stderr
