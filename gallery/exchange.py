"""Moving runs between galleries as zip files.

A zip holds results/run-<id>.png (parameters embedded by engine.pngmeta; a clip's first
frame, with its animation beside it as results/run-<id>.webp and .gif), the input images
under inputs/<sha256>.<ext> (so imported runs can be run again; a print's starting image too)
and runs.csv, one row per run with its parameters, for people and spreadsheets; a print's row
names the run it grew from, and the link is kept when both come in the same zip. Import trusts nothing in the zip: members
are read into memory with size bounds, checked, and written under names of our own making.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

from engine import pngmeta
from engine.clips import read_clip
from engine.devices import is_device
from engine.images import MAX_BYTES, ImageError, load_image
from engine.masks import is_everywhere
from engine.params import BUILTIN_WEIGHTS, Params, validate
from gallery import files
from gallery.errors import GalleryError
from gallery.models import Run, relative_params
from gallery.names import display_name
from gallery.paths import as_run_id, stored_input
from gallery.store import Gallery
from gallery.times import iso, now_iso, to_utc

CSV_NAME = "runs.csv"
CSV_COLUMNS = (
    "id", "file", "title", "tags", "favorite", "owner", "batch", "created", "finished", "duration",
    "content_name", "content_sha256", "style_names", "style_sha256s", "size", "iterations", "optimizer",
    "content_weight", "style_weight", "tv_weight", "seed", "device", "device_used", "evaluation", "weights_name",
    "weights_sha256", "losses_json", "params_json", "mask_sha256s", "mask_names", "frames", "animation", "gif",
    "grown_from",
)
MAX_MEMBERS = 100_000
MAX_CSV_BYTES = 64 * 1024 * 1024
# A spreadsheet runs a cell that starts with one of these as a formula (=HYPERLINK(...) and
# worse); OWASP's advice: lead such text with a quote, which the spreadsheet shows as text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """`value` as a spreadsheet shows it and never runs it; numbers stay numbers."""
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def _from_cell(value: str | None) -> str | None:
    """A text cell as it was before csv_cell."""
    return value[1:] if value and value.startswith("'") and value[1:2] in FORMULA_STARTS else value


# ---- export ---------------------------------------------------------------------------------

def export_zip(gallery: Gallery, run_ids: Iterable[int], dest: str | os.PathLike | BinaryIO) -> int:
    """Writes the given finished runs (PNGs, their input images, runs.csv) as a zip to a path
    or a binary file object; returns how many runs it holds."""
    runs = [gallery.get(as_run_id(run_id)) for run_id in run_ids]
    unfinished = [str(r.id) for r in runs if r.status != "done" or r.result_path is None]
    if unfinished:
        raise GalleryError(f"Only finished runs can be exported; not finished: {', '.join(unfinished)}.")
    if not isinstance(dest, (str, os.PathLike)):
        _write_zip(gallery, runs, dest)
        return len(runs)
    path = Path(dest)
    tmp = files.temp_path(path)
    try:
        with open(tmp, "xb") as f:
            _write_zip(gallery, runs, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        files.remove_quietly(tmp)
        raise
    return len(runs)


def _write_zip(gallery: Gallery, runs: list[Run], out: BinaryIO) -> None:
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    inputs: dict[str, Path] = {}
    # PNG, JPEG and WebP are compressed already: store them; deflate only the CSV.
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zf:
        for run in runs:
            member = f"results/run-{run.id}.png"
            assert run.result_path is not None  # export_zip takes finished runs only
            zf.write(run.result_path, member)
            animation = {}
            if run.is_clip and run.animation_path and run.gif_path:
                for column, path in (("animation", run.animation_path), ("gif", run.gif_path)):
                    animation[column] = f"results/run-{run.id}{path.suffix}"
                    zf.write(path, animation[column])
            for sha in [run.content_sha256, *run.style_sha256s, *run.mask_sha256s, run.init_sha256]:
                found = gallery.get_input_or_none(sha) if sha else None
                if sha and found:
                    inputs[sha] = found.path
            masks = [sha and gallery.get_input_or_none(sha) for sha in run.mask_sha256s]
            row = {**_csv_row(run, member, gallery.data_dir),
                   "mask_sha256s": json.dumps([m.sha256 if m else None for m in masks]),
                   "mask_names": json.dumps([m.name if m else None for m in masks]),
                   "frames": run.frames, **animation}
            writer.writerow({column: csv_cell(value) for column, value in row.items()})
        for path in sorted(inputs.values()):
            zf.write(path, f"inputs/{path.name}")
        zf.writestr(CSV_NAME, table.getvalue(), compress_type=zipfile.ZIP_DEFLATED)


def _csv_row(run: Run, member: str, data_dir: Path) -> dict[str, Any]:
    p = run.params
    return {
        "id": run.id, "file": member, "title": run.title, "tags": run.tags, "favorite": int(run.favorite),
        "owner": run.owner, "batch": run.batch or "", "created": run.created.isoformat(),
        "finished": run.finished.isoformat() if run.finished else "", "duration": run.duration,
        "content_name": run.content_name, "content_sha256": run.content_sha256 or "",
        "style_names": json.dumps(run.style_names), "style_sha256s": json.dumps(run.style_sha256s),
        "size": p.size, "iterations": p.iterations, "optimizer": p.optimizer, "content_weight": p.content_weight,
        "style_weight": p.style_weight, "tv_weight": p.tv_weight, "seed": p.seed, "device": run.device,
        "device_used": run.device_used or "", "evaluation": run.evaluation,
        "weights_name": run.weights_name or "", "weights_sha256": run.weights_sha256 or "",
        "losses_json": json.dumps(run.losses), "params_json": relative_params(p, data_dir).to_json(),
        "grown_from": run.grown_from or "",
    }


# ---- import ---------------------------------------------------------------------------------

def import_zip(gallery: Gallery, source: str | os.PathLike | BinaryIO, owner: str = "",
               keep_weights: bool = False) -> list[int]:
    """Adds the runs of a zip made by export_zip (or any zip of result PNGs); returns the new
    ids. Runs whose result is already in the gallery are skipped. The runs belong to `owner`,
    who imports them, whatever the zip says. A weights file named by a run's settings (a path,
    which would be read on a re-run here) becomes the built-in weights unless `keep_weights`
    (the admin's choice): the zip's author chose that path, not this studio's."""
    label = Path(source).name if isinstance(source, (str, os.PathLike)) else "the file"
    try:
        zf = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as e:
        raise GalleryError(f"Cannot import {label}: it is not a zip file ({e}).") from e
    with zf:
        members = zf.infolist()
        if len(members) > MAX_MEMBERS:
            raise GalleryError(f"Cannot import {label}: it has {len(members)} files, more than {MAX_MEMBERS}.")
        table = _read_table(zf)
        _import_inputs(gallery, zf, members, table)
        new_ids, renamed = [], {}
        for info in members:
            if info.is_dir() or stored_input(info.filename) or not info.filename.lower().endswith(".png"):
                continue
            row = table.get(info.filename, {})
            run_id = _import_result(gallery, _read(zf, info, MAX_BYTES), row, _animation(zf, row), owner, keep_weights)
            if run_id is not None:
                new_ids.append(run_id)
                renamed[row.get("id")] = run_id
        _link_prints(gallery, table, renamed)
    return new_ids


def _link_prints(gallery: Gallery, table: dict[str, dict[str, str]], renamed: dict[Any, int]) -> None:
    """A print keeps the link to the run it grew from when both came in (ids differ here)."""
    for row in table.values():
        source, run_id = renamed.get(row.get("grown_from")), renamed.get(row.get("id"))
        if source is not None and run_id is not None:
            gallery.set_grown_from(run_id, source)


def _read(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    # The sizes in the directory can lie; read at most one byte past the limit.
    if info.file_size > limit:
        return b""
    try:
        with zf.open(info) as f:
            data = f.read(limit + 1)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError):
        return b""  # damaged, encrypted or unsupported member: skipped like any unreadable file
    return data if len(data) <= limit else b""


def _read_table(zf: zipfile.ZipFile) -> dict[str, dict[str, str]]:
    try:
        info = zf.getinfo(CSV_NAME)
    except KeyError:
        return {}
    text = _read(zf, info, MAX_CSV_BYTES).decode("utf-8", errors="replace")
    csv.field_size_limit(MAX_CSV_BYTES)
    rows = ({k: _from_cell(v) or "" for k, v in row.items() if isinstance(k, str) and isinstance(v, str)}
            for row in csv.DictReader(io.StringIO(text)))
    return {row.get("file") or "": row for row in rows}


def _json_list(text: Any) -> list:
    try:
        value = json.loads(text) if isinstance(text, str) and text else []
    except ValueError:
        return []
    return value if isinstance(value, list) else []


def _import_inputs(gallery: Gallery, zf: zipfile.ZipFile, members: list[zipfile.ZipInfo],
                   table: dict[str, dict[str, str]]) -> None:
    names: dict[str, tuple[str, str | None]] = {}  # sha -> (name, kind)
    for row in table.values():
        if row.get("content_sha256"):
            names[row["content_sha256"]] = (row.get("content_name") or "", "content")
        for sha, name in zip(_json_list(row.get("style_sha256s")), _json_list(row.get("style_names"))):
            if isinstance(sha, str) and isinstance(name, str):
                names[sha] = (name, "style")
        for sha, name in zip(_json_list(row.get("mask_sha256s")), _json_list(row.get("mask_names"))):
            if isinstance(sha, str) and isinstance(name, str):
                names[sha] = (name, None)  # a mask: neither content nor style
    for info in members:
        sha = stored_input(info.filename)
        if not sha:
            continue
        data = _read(zf, info, MAX_BYTES)
        if hashlib.sha256(data).hexdigest() != sha:
            continue  # damaged or not what it claims to be
        name, kind = names.get(sha, ("", None))
        try:
            gallery.add_input(data, name or f"{sha[:12]}.{info.filename.rsplit('.', 1)[-1]}", kind)
        except ImageError:
            continue


def _animation(zf: zipfile.ZipFile, row: dict[str, str]) -> tuple[bytes, bytes, int] | None:
    """A clip run's (WebP, GIF, frame count) named by its row, when both decode as clips of the
    same frames; None otherwise (the run comes in as a still: its first frame)."""
    found = []
    for column in ("animation", "gif"):
        try:
            data = _read(zf, zf.getinfo(row.get(column) or ""), MAX_BYTES)
            found.append((data, len(read_clip(data).frames)))
        except (KeyError, ImageError):
            return None
    (webp, frames), (gif, gif_frames) = found
    return (webp, gif, frames) if frames == gif_frames > 1 else None


def _device(text: Any) -> str | None:
    """Where an imported run ran, when it names a device ("cpu", "cuda", "cuda:1"); else unknown."""
    value = str(text or "").strip()
    return value if value == "cpu" or (value.startswith("cuda") and is_device(value)) else None


def _number(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if value == value and abs(value) != float("inf") else None


def _import_result(gallery: Gallery, data: bytes, row: dict[str, str],
                   animation: tuple[bytes, bytes, int] | None = None, owner: str = "",
                   keep_weights: bool = False) -> int | None:
    """Adds one result PNG (a clip's first frame, with its `animation`) as a done run; None when
    it is not one of ours or already here."""
    try:
        info = pngmeta.read_result_info(data)
        if info is None:
            return None
        params = Params.from_json(info.params_json)
        validate(params, need_images=False)
        image = load_image(data)
    except (ImageError, ValueError, TypeError):  # ParamsError is a ValueError
        return None
    result_sha = hashlib.sha256(data).hexdigest()
    if gallery.has_result(result_sha):
        return None

    def local(path: str) -> tuple[str, str | None]:
        """An image reference of the params, kept only if it names an input of this gallery."""
        sha = stored_input(path)
        if sha and gallery.get_input_or_none(sha):
            return path, sha
        return "", None

    content, content_sha = local(params.content)
    styles = [local(s) for s in params.styles]
    # A mask whose input did not come along keeps its inputs/<sha256> name, so a re-run says it is
    # missing (an empty entry would mean "everywhere"); any other path is never kept.
    style_masks = tuple(m if is_everywhere(m) or stored_input(m) else "" for m in params.style_masks)
    params = params.with_changes(content=content, styles=tuple(path for path, _ in styles), style_masks=style_masks,
                                 init_image=params.init_image if stored_input(params.init_image) else "")
    if params.weights not in BUILTIN_WEIGHTS and not keep_weights:
        params = params.with_changes(weights=Params.weights)
    style_names = [n for n in _json_list(row.get("style_names")) if isinstance(n, str)] or list(info.style_names)
    if len(style_names) != len(styles):
        style_names = [f"style {i + 1}" for i in range(len(styles))]
    losses = pngmeta.json_floats(row.get("losses_json")) or info.losses
    favorite = row.get("favorite") in ("1", "true", "True")

    created = to_utc(row.get("created") or info.created)
    finished = to_utc(row.get("finished"))
    return gallery.add_done_run(
        params, data, files.thumbnail_bytes(image),
        content_name=display_name(row.get("content_name") or info.content_name, fallback="content"),
        content_sha256=content_sha,
        styles=[(sha, display_name(name, fallback="style")) for (_, sha), name in zip(styles, style_names)],
        owner=owner, batch=row.get("batch") or None,
        title=row.get("title") or info.title, tags=row.get("tags") or info.tags,
        created=iso(created) if created else now_iso(), finished=finished and iso(finished),
        duration=_number(row.get("duration")), favorite=int(favorite),
        losses_json=json.dumps(losses), timings_json=json.dumps(info.timings),
        device_used=_device(row.get("device_used") or info.device),
        evaluation=str(row.get("evaluation") or info.evaluation)[:200],
        weights_name=(row.get("weights_name") or info.weights_name)[:200] or None,
        weights_sha256=(row.get("weights_sha256") or info.weights_sha256)[:64] or None,
        animation=animation and animation[:2], **({"frames": animation[2]} if animation else {}))
