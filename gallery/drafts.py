"""What a browser was about to generate (its chosen images and settings), kept on the server so a
reload, or the browser's next visit, finds it as it was left: DATA/drafts/<owner>.json.

A draft is whatever JSON object the page writes; reading one back never trusts it (the page
checks each image and value again). One file per owner id, written whole and atomically.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from gallery import files

MAX_BYTES = 64 * 1024  # a few image paths and some dozen settings; anything bigger is not one of ours
_OWNER_RE = re.compile(r"[0-9a-z]{4,32}")


def _path(data_dir: Path, owner: str) -> Path | None:
    return data_dir / "drafts" / f"{owner}.json" if _OWNER_RE.fullmatch(owner or "") else None


def save(data_dir: Path, owner: str, draft: dict[str, Any]) -> bool:
    """Keeps `draft` for `owner` (an owner id; others are ignored); False when it could not be
    kept (a full disk): a draft is a convenience, never worth an error on the page."""
    path = _path(data_dir, owner)
    try:
        data = json.dumps(draft, sort_keys=True).encode()
    except (TypeError, ValueError):
        return False
    if path is None or len(data) > MAX_BYTES:
        return False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        files.write_atomic(path, data)
    except OSError:
        return False
    return True


def load(data_dir: Path, owner: str) -> dict[str, Any]:
    """`owner`'s draft, or {} when there is none (or it cannot be read as one)."""
    path = _path(data_dir, owner)
    try:
        if path is None or path.stat().st_size > MAX_BYTES:
            return {}
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}
