"""A gallery made by the code of schema version 1 (tests/data/gallery_v1, made by
tests/data/make_gallery_v1.py at commit 275bb56) opens with today's code, keeping its runs,
files and favourites, with the device column split into asked / used / evaluation."""
from __future__ import annotations

import shutil
from pathlib import Path

from gallery import Gallery, RunFilter
from gallery.db import MIGRATIONS
from harness.paths import ROOT
from support.runs import files_under

V1 = ROOT / "tests" / "data" / "gallery_v1"


def test_a_version_1_gallery_opens_with_its_runs_files_and_favourites(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    shutil.copytree(V1, folder)
    before = files_under(folder)
    with Gallery(folder) as g:
        assert g.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) > 1
        runs = {r.title: r for r in g.list_runs(limit=100)}
        assert sorted(runs) == ["evaluated", "failed", "plain", "queued"]
        plain, evaluated = runs["plain"], runs["evaluated"]
        assert [r.id for r in g.list_runs(RunFilter(favorite=True))] == [plain.id]
        assert plain.tags == "harbour, night" and plain.owner == "ada"
        # Asked for / ran on / how: from "cpu" and "cpu (channels_last+bf16)" of schema 1.
        assert (plain.device, plain.device_used, plain.evaluation) == ("cpu", "cpu", "")
        assert (evaluated.device, evaluated.device_used, evaluated.evaluation) == ("auto", "cpu", "channels_last+bf16")
        assert (runs["queued"].device, runs["queued"].device_used) == ("cuda", None)
        assert runs["failed"].error == "out of memory"
        for run in (plain, evaluated):
            assert run.result_path.is_file() and run.thumb_path.is_file()
            assert [i for i, _ in g.previews(run.id)] == [1, 2]
        assert evaluated.mask_sha256s[0] and g.get_input_or_none(evaluated.mask_sha256s[0])
        assert g.export_png(plain.id) == (V1 / "runs" / str(plain.id) / "result.png").read_bytes()
        assert "worker_token" not in {c.name for c in g.db["runs"].columns}
        assert g.remove_orphans() == []  # every file is still named by a row
        assert g.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        # And it works on: the queued run runs, a failed one can be queued again.
        assert g.requeue(runs["failed"].id) > runs["queued"].id
    assert before <= files_under(folder)
