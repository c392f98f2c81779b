"""python -m engine: writes a PNG carrying its params; bad input is exit 2 and one line."""
import json
import subprocess
import sys

import pytest

from harness.paths import CONTENT, ROOT, STYLE


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_writes_png_with_params_and_show_prints_them(tmp_path):
    out = tmp_path / "out.png"
    r = cli(str(CONTENT), str(STYLE), "-o", str(out), "--size", "64", "--iterations", "3", "--device", "cpu",
            "--seed", "0", "--save-every", "2", "--no-multiscale", "--style-weight", "50")
    assert r.returncode == 0, r.stderr
    assert "3/3" in r.stderr  # the progress bar
    from PIL import Image
    assert Image.open(out).size == (64, 48)
    assert (tmp_path / "out_0002.png").is_file()
    shown = cli("--show", str(out))
    assert shown.returncode == 0
    meta = json.loads(shown.stdout)
    assert meta["studio:params"]["style_weight"] == 50.0
    assert meta["studio:params"]["styles"] == [str(STYLE)]
    assert meta["studio:weights"].startswith("caffe sha256:")


@pytest.mark.parametrize("args, fragment", [
    (["--size", "5"], "size: must be at least 16"),
    (["--optimizer", "sgd"], "optimizer: must be one of lbfgs, adam"),
    (["--size", "big"], "invalid int value"),
    (["--style-blend", "1", "2"], "style_blend: has 2 weights but there are 1 style images"),
    (["--content-layers", "conv9_1"], "unknown layer"),
])
def test_bad_flags_exit_2_with_one_line(tmp_path, args, fragment):
    r = cli(str(CONTENT), str(STYLE), "-o", str(tmp_path / "o.png"), *args)
    assert r.returncode == 2
    assert fragment in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_bad_images_exit_2_with_one_line(tmp_path):
    fake = tmp_path / "fake.jpg"
    fake.write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    for content in (fake, tmp_path / "missing.jpg"):
        r = cli(str(content), str(STYLE), "-o", str(tmp_path / "o.png"), "--size", "32", "--iterations", "1")
        assert r.returncode == 2, r.stderr
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_show_on_a_png_without_params(tmp_path):
    from PIL import Image
    plain = tmp_path / "plain.png"
    Image.new("RGB", (4, 4)).save(plain)
    r = cli("--show", str(plain))
    assert r.returncode == 2 and "carries no" in r.stderr
