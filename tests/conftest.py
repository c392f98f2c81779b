"""Fixtures the tests share: real data folders in tmp dirs, the app's environment. Helper
functions live in tests/support/; no test imports this file."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gallery import Gallery


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


@pytest.fixture
def studio(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gallery]:
    """The app's environment: STUDIO_DATA at a fresh folder, no worker; the test's own Gallery
    handle on that folder (the app opens its own, as another process would)."""
    monkeypatch.setenv("STUDIO_DATA", str(data_dir))
    monkeypatch.setenv("STUDIO_WORKER", "0")
    monkeypatch.delenv("STUDIO_EXAMPLES", raising=False)
    g = Gallery(data_dir)
    yield g
    g.close()
