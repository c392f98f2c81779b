"""Prints in the gallery: a run that starts from an image keeps that image as a stored input, a
print records the run it grew from (through requeue, deletion and a zip's round trip), and a
tiled run's progress says its tile."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from gallery import Gallery, NotFound, RunFilter
from gallery.exchange import export_zip, import_zip
from harness.paths import CONTENT
from support.runs import fake_result, finished_run, tiny_params


def print_params(start: Path, size: int = 64):
    return tiny_params(size=size, init="image", init_image=str(start), multiscale=True, multiscale_from=32)


@pytest.fixture
def start_image(tmp_path: Path) -> Path:
    path = tmp_path / "small result.png"
    Image.open(CONTENT).convert("RGB").resize((32, 24)).save(path)
    return path


def test_a_runs_starting_image_is_stored_like_its_content(data_dir: Path, start_image: Path) -> None:
    with Gallery(data_dir) as g:
        rid = g.submit(print_params(start_image))
        run = g.get(rid)
        stored = g.get_input(run.init_sha256)
        assert Path(run.params.init_image) == stored.path and stored.path.is_relative_to(data_dir)
        assert (stored.width, stored.height) == (32, 24)
        start_image.unlink()  # the run no longer needs the file it was given
        assert Path(g.get(rid).params.init_image).is_file()
        # Stored relative to the data folder, as content and styles are.
        assert g.db.execute("SELECT json_extract(params_json, '$.init_image') FROM runs").fetchone()[0] == \
            f"inputs/{stored.path.name}"


def test_a_print_records_the_run_it_grew_from(data_dir: Path, start_image: Path) -> None:
    with Gallery(data_dir) as g:
        small = finished_run(g)
        other = finished_run(g)
        first = g.submit(print_params(start_image), grown_from=small)
        second = g.submit(print_params(start_image, size=128), grown_from=small)
        assert g.get(first).grown_from == small and g.get(small).grown_from is None
        assert [r.id for r in g.prints_of(small)] == [first, second] and g.prints_of(other) == []
        assert g.count_runs(RunFilter(grown_from=small)) == 2
        with pytest.raises(NotFound):
            g.submit(print_params(start_image), grown_from=9999)
        # Re-run keeps the link.
        g.fail(second, "out of memory")
        again = g.requeue(second)
        assert g.get(again).grown_from == small and g.get(again).params.init_image == g.get(second).params.init_image
        # The run it grew from is deleted: the print stays, without the link.
        g.delete(small)
        assert g.get(first).grown_from is None and g.prints_of(small) == []


def test_the_link_survives_a_zip_round_trip(data_dir: Path, tmp_path: Path, start_image: Path) -> None:
    with Gallery(data_dir) as g:
        small = finished_run(g)
        big = finished_run(g, params=print_params(start_image), grown_from=small)
        init_sha = g.get(big).init_sha256
        export_zip(g, [big, small], tmp_path / "both.zip")  # the print first: linked after the import
        export_zip(g, [big], tmp_path / "print.zip")
    with Gallery(tmp_path / "elsewhere") as other:
        finished_run(other)  # so the ids differ from the first gallery's
        imported = import_zip(other, tmp_path / "both.zip")
        new_big, new_small = imported
        assert new_small != small and other.get(new_big).grown_from == new_small
        assert [r.id for r in other.prints_of(new_small)] == [new_big]
        # The starting image came along: the print can be run again here.
        assert other.get(new_big).init_sha256 == init_sha and other.get_input_or_none(init_sha)
    with Gallery(tmp_path / "third") as third:
        (alone,) = import_zip(third, tmp_path / "print.zip")
        assert third.get(alone).grown_from is None  # its source is not in this gallery


def test_a_tiled_runs_progress_says_its_tile(data_dir: Path) -> None:
    with Gallery(data_dir) as g:
        rid = g.submit(tiny_params())
        g.claim(rid, "test")
        g.record_progress(rid, 2, 10, {"total": 1.0}, tile=5, tiles=12)
        run = g.get(rid)
        assert (run.iteration, run.tile, run.tiles) == (2, 5, 12)  # iteration 3 in progress, tile 5 of 12
        g.finish(rid, fake_result())
        assert (g.get(rid).tile, g.get(rid).tiles) == (0, 12)


def test_an_old_gallery_gets_the_new_columns(tmp_path: Path) -> None:
    from harness.paths import ROOT

    folder = tmp_path / "data"
    shutil.copytree(ROOT / "tests" / "data" / "gallery_v1", folder)
    with Gallery(folder) as g:
        runs = g.list_runs(limit=100)
        assert runs and all((r.grown_from, r.tile, r.tiles, r.params.init_image) == (None, 0, 0, "") for r in runs)
        assert all(g.prints_of(r.id) == [] for r in runs)
        done = next(r for r in runs if r.status == "done")
        assert g.get(g.submit(tiny_params(), grown_from=done.id)).grown_from == done.id
