"""The gallery's records as dataclasses, built from database rows."""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.masks import is_everywhere
from engine.params import Params
from gallery.errors import GalleryError
from gallery.paths import input_sha256
from gallery.times import to_utc


@dataclass(frozen=True)
class InputImage:
    """An uploaded image, stored once under its sha256."""

    sha256: str
    name: str  # the upload's name, cleaned; display only
    path: Path
    format: str
    width: int
    height: int
    file_size: int
    used_as_content: bool
    used_as_style: bool
    created: datetime
    last_used: datetime
    frames: int = 1  # more than one: a clip (animated GIF or WebP, or a video)
    duration_ms: int = 0  # a clip's length

    @property
    def is_clip(self) -> bool:
        return self.frames > 1


@dataclass(frozen=True)
class Run:
    """One style-transfer job and, once done, its result."""

    id: int
    status: str
    owner: str
    batch: str | None
    title: str
    tags: str
    params: Params  # image paths are absolute paths into the gallery's inputs/
    content_name: str
    style_names: list[str]
    created: datetime
    started: datetime | None
    finished: datetime | None
    duration: float | None
    favorite: bool
    error: str | None
    iteration: int
    total: int
    losses: dict[str, float]
    device: str  # as asked for: auto, cpu or cuda
    weights_name: str | None
    weights_sha256: str | None
    result_path: Path | None
    thumb_path: Path | None
    preview_path: Path | None
    content_sha256: str | None = None
    style_sha256s: list[str | None] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    cancel_requested: bool = False
    worker: str | None = None
    requeued_from: int | None = None
    device_used: str | None = None  # where it ran, once it has
    evaluation: str = ""  # how the loss was evaluated, when not plain float32 (engine.accel)
    frames: int = 1  # more than one: the content is a clip, styled frame by frame
    frame: int = 0  # the frame in progress (1-based) while a clip runs; iteration is within it
    animation_path: Path | None = None  # a finished clip's animated WebP
    gif_path: Path | None = None  # and GIF
    grown_from: int | None = None  # the run whose result this print started from (Gallery.prints_of: back)
    tile: int = 0  # a tiled run's tiles done in the iteration after `iteration`
    tiles: int = 0  # its tiles per iteration (0: the whole image at once)

    @property
    def is_clip(self) -> bool:
        return self.frames > 1

    def work_done(self) -> float:
        """The share of its work (Params.work_done) that the latest recorded progress stands for."""
        return self.params.work_done(self.iteration or 0, self.frame, self.frames)

    @property
    def ran_on(self) -> str:
        """Where it ran and how, for people: "cpu", "cuda:0 (channels_last+bf16)"; "" before it ran."""
        if not self.device_used:
            return ""
        return f"{self.device_used} ({self.evaluation})" if self.evaluation else self.device_used

    @property
    def init_sha256(self) -> str | None:
        """The stored input the run starts from (init image), if any."""
        return input_sha256(self.params.init_image) if self.params.init_image else None

    @property
    def mask_sha256s(self) -> list[str | None]:
        """The stored input of each style's mask (None: everywhere); empty without masks."""
        return [None if is_everywhere(m) else input_sha256(m) for m in self.params.style_masks]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (the CLI's --json, the export CSV)."""
        d = asdict(self)
        d["params"] = self.params.to_dict()
        for key, value in d.items():
            if isinstance(value, datetime):
                d[key] = value.isoformat()
            elif isinstance(value, Path):
                d[key] = str(value)
        return d


def _stored_time(value: str) -> datetime:
    """A NOT NULL time column: the gallery wrote it (gallery.times.iso), so it reads back."""
    found = to_utc(value)
    if found is None:
        raise GalleryError(f"A stored time could not be read: {value!r}.")
    return found


def input_from_row(row: dict[str, Any], data_dir: Path) -> InputImage:
    return InputImage(
        sha256=row["sha256"], name=row["name"], path=data_dir / row["file"], format=row["format"],
        width=row["width"], height=row["height"], file_size=row["file_size"],
        used_as_content=bool(row["used_as_content"]), used_as_style=bool(row["used_as_style"]),
        created=_stored_time(row["created"]), last_used=_stored_time(row["last_used"]),
        frames=row["frames"], duration_ms=row["duration_ms"],
    )


def absolute_params(params_json: str, data_dir: Path) -> Params:
    """Stored params name images relative to the data folder (so the folder can move);
    callers get paths they can open."""
    p = Params.from_json(params_json)
    def resolve(path: str) -> str:
        return str(data_dir / path) if path and not Path(path).is_absolute() else path
    return _map_paths(p, resolve)


def _map_paths(p: Params, fn: Callable[[str], str]) -> Params:
    """`p` with `fn` applied to every image path (masks' `all` keyword left alone)."""
    return p.with_changes(content=fn(p.content), styles=tuple(fn(s) for s in p.styles),
                          style_masks=tuple(m if is_everywhere(m) else fn(m) for m in p.style_masks),
                          init_image=p.init_image and fn(p.init_image))


def relative_params(params: Params, data_dir: Path) -> Params:
    """The inverse of absolute_params, for what leaves the gallery (exports)."""
    def relative(path: str) -> str:
        try:
            return Path(path).relative_to(data_dir).as_posix()
        except ValueError:
            return path
    return _map_paths(params, relative)


def run_from_row(row: dict[str, Any], styles: list[tuple[str | None, str]], data_dir: Path) -> Run:
    def path(column: str) -> Path | None:
        return data_dir / row[column] if row[column] else None
    return Run(
        id=row["id"], status=row["status"], owner=row["owner"], batch=row["batch"], title=row["title"],
        tags=row["tags"], params=absolute_params(row["params_json"], data_dir),
        content_name=row["content_name"], style_names=[name for _, name in styles],
        created=_stored_time(row["created"]), started=to_utc(row["started"]),
        finished=to_utc(row["finished"]), duration=row["duration"], favorite=bool(row["favorite"]),
        error=row["error"], iteration=row["iteration"], total=row["total"],
        losses=json.loads(row["losses_json"]), device=row["device"], weights_name=row["weights_name"],
        weights_sha256=row["weights_sha256"], result_path=path("result_file"), thumb_path=path("thumb_file"),
        preview_path=path("preview_file"), content_sha256=row["content_sha256"],
        style_sha256s=[sha for sha, _ in styles], timings=json.loads(row["timings_json"]),
        cancel_requested=bool(row["cancel_requested"]), worker=row["worker"], requeued_from=row["requeued_from"],
        device_used=row["device_used"], evaluation=row["evaluation"] or "",
        frames=row["frames"], frame=row["frame"], animation_path=path("animation_file"), gif_path=path("gif_file"),
        grown_from=row["grown_from"], tile=row["tile"], tiles=row["tiles"],
    )
