"""Where things live: the data folder, run ids, and the names of stored files."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from gallery.errors import GalleryError, NotFound

DATA_ENV = "STUDIO_DATA"
DEFAULT_DATA_DIR = "data"
# A stored input image: inputs/<sha256>.<ext>, relative to the data folder.
_INPUT_FILE = r"inputs/([0-9a-f]{64})\.[a-z0-9]{1,5}"  # mp4 too
_STORED_INPUT_RE = re.compile(f"^{_INPUT_FILE}$")
_INPUT_UNDER_RE = re.compile(f"(?:^|/){_INPUT_FILE}$")


def data_dir_path(data_dir: str | os.PathLike | None = None) -> Path:
    """The data folder, absolute: the argument, else $STUDIO_DATA, else ./data."""
    return Path(data_dir if data_dir is not None else os.environ.get(DATA_ENV) or DEFAULT_DATA_DIR) \
        .expanduser().resolve()


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """data_dir_path(data_dir), created if missing; GalleryError when it cannot be a folder."""
    path = data_dir_path(data_dir)
    if path.exists() and not path.is_dir():
        raise GalleryError(f"The data folder {path} is a file; choose a folder (STUDIO_DATA or --data).")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GalleryError(f"Cannot create the data folder {path}: {e.strerror or e}.") from e
    return path


def as_run_id(value: Any) -> int:
    """A run id from an int or a string of digits; GalleryError for anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise GalleryError(f"A run id is a whole number, not {value!r}.")
    if isinstance(value, str):
        if not value.strip().isdigit() or not value.strip().isascii():
            raise GalleryError(f"A run id is a whole number, not {value!r}.")
        value = int(value)
    if not 0 < value < 2**63:  # well formed, but no row can have it: not found (?run=0 in a URL)
        raise NotFound(f"There is no run {value}: ids start at 1.")
    return value


def stored_input(relative: str) -> str | None:
    """The sha256 named by exactly `inputs/<sha256>.<ext>` (a name in a data folder or a zip)."""
    match = _STORED_INPUT_RE.match(relative)
    return match.group(1) if match else None


def input_sha256(path: str | Path) -> str | None:
    """The sha256 of the gallery input that a path (relative, or under some data folder) names."""
    match = _INPUT_UNDER_RE.search(Path(path).as_posix())
    return match.group(1) if match else None


def relative_to(path: Path, folder: Path) -> str | None:
    """`path` relative to `folder`, POSIX style; None when it lies outside."""
    try:
        return path.resolve().relative_to(folder).as_posix()
    except ValueError:
        return None
