"""Regional styles' masks in the gallery: stored once by hash like other inputs, carried by
requeue and by zip export and import."""
from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from engine.params import ParamsError
from gallery import Gallery, GalleryError
from gallery.exchange import export_zip, import_zip
from harness.paths import STYLE, STYLE2
from support.runs import finished_run, tiny_params


def left_mask(folder: Path, name: str = "left.png", value: int = 255) -> Path:
    img = Image.new("L", (40, 30))
    img.paste(value, (0, 0, 20, 30))
    path = folder / name
    img.save(path)
    return path


def masked_params(mask: Path, **changes):
    return tiny_params(styles=(STYLE, STYLE2), style_masks=(str(mask), "all"), **changes)


def test_masks_are_stored_once_as_inputs(data_dir: Path, tmp_path: Path) -> None:
    mask = left_mask(tmp_path)
    copy = tmp_path / "same-mask.png"
    copy.write_bytes(mask.read_bytes())
    with Gallery(data_dir) as g:
        first, second = g.submit(masked_params(mask)), g.submit(masked_params(copy, seed=2))
        a, b = g.get(first), g.get(second)
        assert a.params.style_masks[1] == "all" and a.params.style_masks[0] == b.params.style_masks[0]
        stored = Path(a.params.style_masks[0])
        assert stored.is_file() and stored.parent == data_dir / "inputs"
        assert stored.read_bytes() == mask.read_bytes()
        assert a.mask_sha256s == [stored.stem, None]
        assert g.get_input(stored.stem).name == "left.png"
        # Masks are neither content nor style in the pickers.
        assert stored.stem not in {i.sha256 for i in g.list_inputs(kind="style") + g.list_inputs(kind="content")}
        row = g._row("SELECT params_json FROM runs WHERE id = ?", [first])
        assert f'"style_masks": ["inputs/{stored.name}", "all"]' in row["params_json"]


def test_a_black_mask_is_refused_at_submit(data_dir: Path, tmp_path: Path) -> None:
    with Gallery(data_dir) as g, pytest.raises(ParamsError) as e:
        g.submit(masked_params(left_mask(tmp_path, value=0)))
    assert "is black everywhere" in e.value.errors["style_masks"]


def test_requeue_keeps_the_masks_and_needs_them(data_dir: Path, tmp_path: Path) -> None:
    with Gallery(data_dir) as g:
        rid = g.submit(masked_params(left_mask(tmp_path)))
        g.claim(rid, "t")
        g.fail(rid, "stopped")
        again = g.get(g.requeue(rid))
        assert again.params.style_masks == g.get(rid).params.style_masks
        g.claim(again.id, "t")
        g.fail(again.id, "stopped")
        g.db.execute("DELETE FROM inputs WHERE sha256 = ?", [again.mask_sha256s[0]])
        with pytest.raises(GalleryError, match="input images are not in this gallery"):
            g.requeue(again.id)


def test_export_and_import_carry_the_masks(tmp_path: Path) -> None:
    mask = left_mask(tmp_path)
    with Gallery(tmp_path / "source") as source:
        rid = finished_run(source, params=masked_params(mask))
        sha = source.get(rid).mask_sha256s[0]
        export_zip(source, [rid], tmp_path / "out.zip")
    with Gallery(tmp_path / "target") as target:
        [new] = import_zip(target, tmp_path / "out.zip")
        run = target.get(new)
        assert run.mask_sha256s == [sha, None]
        assert Path(run.params.style_masks[0]).read_bytes() == mask.read_bytes()
        assert target.get_input(sha).name == "left.png"
