"""Zip export and import between galleries."""
from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from engine import pngmeta
from gallery import Gallery, GalleryError, RunFilter
from gallery.exchange import export_zip, import_zip
from harness.paths import STYLE2
from support.runs import files_under, finished_clip_run, finished_run, named_files, tiny_params


@pytest.fixture
def source(tmp_path: Path) -> Gallery:
    g = Gallery(tmp_path / "source")
    finished_run(g, title="First", tags="a, b", owner="ana")
    finished_run(g, params=tiny_params(styles=(STYLE2,), seed=9), title="Second")
    g.set_favorite(2, True)
    yield g
    g.close()


def test_round_trip(source: Gallery, tmp_path: Path) -> None:
    dest = tmp_path / "out.zip"
    assert export_zip(source, [1, 2], dest) == 2
    with zipfile.ZipFile(dest) as zf:
        names = set(zf.namelist())
        assert {"results/run-1.png", "results/run-2.png", "runs.csv"} <= names
        assert len([n for n in names if n.startswith("inputs/")]) == 3
        rows = list(csv.DictReader(io.StringIO(zf.read("runs.csv").decode())))
    assert [r["title"] for r in rows] == ["First", "Second"] and rows[1]["seed"] == "9"

    with Gallery(tmp_path / "target") as target:
        new = import_zip(target, dest, owner="bo")
        assert len(new) == 2
        for old_id, new_id in zip([1, 2], new):
            old, copy = source.get(old_id), target.get(new_id)
            assert copy.status == "done" and copy.owner == "bo"  # whoever imports it owns it
            assert (copy.title, copy.tags, copy.favorite) == (old.title, old.tags, old.favorite)
            assert (copy.content_name, copy.style_names) == (old.content_name, old.style_names)
            assert copy.content_sha256 == old.content_sha256 and copy.style_sha256s == old.style_sha256s
            assert copy.params.with_changes(content="", styles=()) == old.params.with_changes(content="", styles=())
            assert Path(copy.params.content).is_file()  # the inputs came along
            assert copy.result_path.read_bytes() == old.result_path.read_bytes()
            assert copy.thumb_path.is_file() and copy.losses == old.losses and copy.weights_name == old.weights_name
            assert copy.created == old.created
        assert target.list_runs(RunFilter(search="second"))[0].id == new[1]
        assert import_zip(target, dest) == []  # already there: nothing twice
        assert target.count_runs() == 2


def test_export_to_a_file_object_and_all_runs_only_finished(source: Gallery) -> None:
    buffer = io.BytesIO()
    assert export_zip(source, [2], buffer) == 1
    assert "results/run-2.png" in zipfile.ZipFile(io.BytesIO(buffer.getvalue())).namelist()
    source.submit(tiny_params())
    with pytest.raises(GalleryError, match="Only finished runs"):
        export_zip(source, [1, 3], io.BytesIO())


def test_import_plain_pngs_and_ignore_the_rest(source: Gallery, tmp_path: Path) -> None:
    png = source.export_png(1)
    archive = tmp_path / "mixed.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../../escape.png", png)  # a hostile name: only its bytes are used
        zf.writestr("notes/readme.txt", "hello")
        zf.writestr("fake.png", b"\x89PNG\r\n\x1a\nnot really")
        zf.writestr("inputs/" + "0" * 64 + ".jpg", b"does not match its hash")
    with Gallery(tmp_path / "target") as target:
        new = import_zip(target, archive)
        assert len(new) == 1
        run = target.get(new[0])
        assert run.status == "done" and run.title == "First" and run.content_name == "tubingen.jpg"
        assert run.content_sha256 is None  # the input image was not in the zip
        with pytest.raises(GalleryError):
            target.requeue(run.id)
        assert files_under(tmp_path / "target") >= {f"runs/{run.id}/result.png"}
    assert {p.name for p in tmp_path.iterdir()} == {"source", "target", "mixed.zip"}
    assert pngmeta.read_params_json(run.result_path)


def test_import_refuses_a_non_zip(source: Gallery, tmp_path: Path) -> None:
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"PK but not really")
    with pytest.raises(GalleryError, match="not a zip file"):
        import_zip(source, junk)


def test_a_clip_run_travels_with_its_animation(tmp_path: Path) -> None:
    from engine.clips import read_clip

    with Gallery(tmp_path / "source") as source:
        rid = finished_clip_run(source, title="Pan")
        export_zip(source, [rid], tmp_path / "clip.zip")
    with zipfile.ZipFile(tmp_path / "clip.zip") as zf:
        assert {f"results/run-{rid}.webp", f"results/run-{rid}.gif"} <= set(zf.namelist())
        # The same zip with its animation cut short: that run comes in as a still.
        with zipfile.ZipFile(tmp_path / "cut.zip", "w") as cut:
            for info in zf.infolist():
                data = zf.read(info)
                cut.writestr(info, data[: len(data) // 2] if info.filename.endswith(".webp") else data)
    with Gallery(tmp_path / "target") as target:
        [new] = import_zip(target, tmp_path / "clip.zip")
        run = target.get(new)
        assert run.is_clip and run.frames == 3 and run.title == "Pan"
        assert read_clip(run.animation_path).durations_ms == read_clip(run.gif_path).durations_ms == [90, 110, 130]
        assert target.get_input(run.content_sha256).frames == 3  # the GIF came along, as a clip
        # Its frames one at a time (the detail view's slider), decoded from the WebP.
        frames = target.frames(new)
        assert len(frames) == 3 and all(Image.open(f).size == Image.open(run.result_path).size for f in frames)
        assert target.remove_orphans() == [] and files_under(target.data_dir) == named_files(target)
    with Gallery(tmp_path / "other") as other:
        [still] = import_zip(other, tmp_path / "cut.zip")
        assert not other.get(still).is_clip and other.get(still).animation_path is None


def test_csv_cells_that_would_start_a_formula_are_text(tmp_path: Path) -> None:
    """Finding 5. Before: a title or tags starting with =, +, - or @ went into runs.csv as they
    were, and a spreadsheet opening it ran them."""
    g = Gallery(tmp_path / "source")
    title, tags = '=HYPERLINK("http://evil.example","open")', "+1, @SUM(A1), -2"
    finished_run(g, title=title, tags=tags, owner="ana")
    export_zip(g, [1], tmp_path / "out.zip")
    with zipfile.ZipFile(tmp_path / "out.zip") as zf:
        row = next(csv.DictReader(io.StringIO(zf.read("runs.csv").decode())))
    assert row["title"] == "'" + title and row["tags"] == "'" + g.get(1).tags
    assert not any(v.startswith(("=", "+", "-", "@")) for v in row.values())
    assert row["seed"] == "0" and row["size"] == str(g.get(1).params.size)  # numbers stay numbers
    with Gallery(tmp_path / "target") as target:
        copy = target.get(import_zip(target, tmp_path / "out.zip")[0])
        assert (copy.title, copy.tags) == (title, g.get(1).tags)  # and come back as they were


def test_an_import_belongs_to_its_importer_and_brings_no_weights_path(tmp_path: Path) -> None:
    """Finding 7. Before: the CSV's owner, a device_used of any text and a weights path came in as
    they were; an admin's "Re-run with these settings" would then have read that path."""
    g = Gallery(tmp_path / "source")
    finished_run(g, params=tiny_params(weights="/home/someone/.ssh/id_rsa"), owner="victim01")
    export_zip(g, [1], tmp_path / "out.zip")
    with zipfile.ZipFile(tmp_path / "out.zip") as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    rows = list(csv.DictReader(io.StringIO(members["runs.csv"].decode())))
    rows[0]["device_used"] = "[you won](http://evil.example)"
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    members["runs.csv"] = table.getvalue().encode()
    forged = tmp_path / "forged.zip"
    with zipfile.ZipFile(forged, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    with Gallery(tmp_path / "target") as target:
        copy = target.get(import_zip(target, forged, owner="me000001")[0])
        assert copy.owner == "me000001" and copy.params.weights == "caffe" and copy.device_used is None
    with Gallery(tmp_path / "admin") as target:  # the admin may keep it, on purpose
        copy = target.get(import_zip(target, forged, keep_weights=True)[0])
        assert copy.params.weights == "/home/someone/.ssh/id_rsa"
