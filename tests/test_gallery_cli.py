"""`python -m gallery`, called in-process through main() (one subprocess checks the module runs)."""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from engine import pngmeta
from gallery import Gallery
from gallery.cli import main
from harness.paths import CONTENT, ROOT, STYLE
from support.runs import finished_clip_run, finished_run, tiny_params


@pytest.fixture
def filled(data_dir: Path) -> Path:
    with Gallery(data_dir) as g:
        finished_run(g, title="Sunset", tags="warm")
        finished_run(g, title="Night")
        rid = g.submit(tiny_params())
        g.claim(rid, "t")
        g.fail(rid, "broken")
        g.set_favorite(2, True)
    return data_dir


def cli(data_dir: Path, *args: str) -> int:
    return main(["--data", str(data_dir), *args])


def test_list_and_filters(filled: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli(filled, "list") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["ID", "STATUS", "CREATED"] and len(out) == 4
    assert cli(filled, "list", "--status", "done", "--favorite") == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == ["2"]
    assert cli(filled, "list", "--search", "suns", "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["title"] for r in rows] == ["Sunset"] and rows[0]["params"]["size"] == 32
    assert cli(filled, "list", "--style", "starry_night.jpg", "--limit", "1", "--json") == 0
    assert len(json.loads(capsys.readouterr().out)) == 1


def test_show(filled: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli(filled, "show", "1") == 0
    out = capsys.readouterr().out
    assert "status:        done" in out and "title:         Sunset" in out
    assert "runs/1/result.png" in out and '"size": 32' in out
    assert cli(filled, "show", "3") == 0
    assert "error:         broken" in capsys.readouterr().out


def test_export_import_rm_requeue(filled: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli(filled, "export", "1", str(tmp_path / "one.png")) == 0
    assert pngmeta.read_params_json(tmp_path / "one.png")
    assert cli(filled, "export", "2", str(tmp_path)) == 0
    assert (tmp_path / "run-2.png").is_file()
    assert cli(filled, "export", "--all", str(tmp_path / "all.zip")) == 0
    assert len([n for n in zipfile.ZipFile(tmp_path / "all.zip").namelist() if n.endswith(".png")]) == 2
    capsys.readouterr()

    other = tmp_path / "other"
    assert cli(other, "import", str(tmp_path / "all.zip")) == 0
    assert capsys.readouterr().out.strip() == "imported 2 runs: 1, 2"

    assert cli(filled, "requeue", "3") == 0
    assert capsys.readouterr().out.startswith("run 4 queued")
    assert cli(filled, "cancel", "4") == 0
    assert capsys.readouterr().out.strip() == "run 4 cancelled"
    assert cli(filled, "rm", "1", "4") == 0
    with Gallery(filled) as g:
        assert [r.id for r in g.list_runs()] == [3, 2]
        assert not (filled / "runs" / "1").exists()


@pytest.mark.parametrize("args, message", [
    (["show", "99"], "There is no run 99."),
    (["show", "../etc"], "A run id is a whole number"),
    (["rm", "2", "99"], "There is no run 99."),
    (["requeue", "1"], "only interrupted, failed or cancelled"),
    (["export", "3", "x.png"], "only finished runs"),
    (["export", "--all", "1", "x.zip"], "either IDs or --all"),
    (["export", "1", "/no/such/folder/x.png"], "no such folder"),
    (["import", "missing.zip"], "no such file"),
    (["submit", "missing.jpg", "style.jpg"], "no such file: missing.jpg"),
    (["submit", str(CONTENT), str(CONTENT), "--size", "5"], "size: must be at least 16"),
    (["list", "--limit", "0"], "--limit must be at least 1"),
])
def test_bad_input_exits_2_with_one_line(filled: Path, capsys: pytest.CaptureFixture, args, message) -> None:
    assert cli(filled, *args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    with Gallery(filled) as g:
        assert g.count_runs() == 3  # nothing changed


def test_usage_errors_and_bad_data_folder(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "gallery.db").write_bytes(b"not a database at all" * 100)
    for args in (["--data", str(bad), "list"], ["list", "--status", "nope"], ["frobnicate"], []):
        proc = subprocess.run([sys.executable, "-m", "gallery", *args], cwd=ROOT, capture_output=True, text=True,
                              env={"PATH": "/usr/bin:/bin", "STUDIO_DATA": str(tmp_path / "data")})
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr


def test_submit_queues_without_running_and_prints_the_id(data_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli(data_dir, "submit", str(CONTENT), str(STYLE), "--size", "64", "--iterations", "3",
               "--title", "later") == 0
    rid = int(capsys.readouterr().out.strip())
    with Gallery(data_dir) as g:
        run = g.get(rid)
        assert (run.status, run.title, run.params.size, g.queue_position(rid)) == ("queued", "later", 64, 1)
    assert cli(data_dir, "submit", str(CONTENT), "missing.jpg") == 2
    assert "no such file: missing.jpg" in capsys.readouterr().err


def test_a_clip_run_shows_and_exports_its_animation(data_dir: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    from engine.clips import read_clip

    with Gallery(data_dir) as g:
        clip = finished_clip_run(g)
        still = finished_run(g)
    assert cli(data_dir, "show", str(clip)) == 0
    out = capsys.readouterr().out
    assert "frames:        3" in out and "animation.webp" in out and "animation.gif" in out
    for name in ("out.webp", "out.gif"):
        assert cli(data_dir, "export", str(clip), str(tmp_path / name)) == 0
        assert read_clip(tmp_path / name).durations_ms == [90, 110, 130]
    assert cli(data_dir, "export", str(clip), str(tmp_path / "first.png")) == 0
    assert pngmeta.read_params_json(tmp_path / "first.png")
    assert cli(data_dir, "export", str(still), str(tmp_path / "still.webp")) == 2
    assert f"run {still} is not a finished clip" in capsys.readouterr().err
