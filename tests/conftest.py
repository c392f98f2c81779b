"""Shared fixtures: real test images from ../shared/images, real data folders in tmp dirs."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Resolved: the app stores resolved paths, and ../shared may be a link to the real folder.
# STUDIO_TEST_IMAGES points elsewhere where there is no ../shared (a lent GPU machine).
SHARED_IMAGES = Path(os.environ.get("STUDIO_TEST_IMAGES") or ROOT.parent / "shared" / "images").resolve()
CONTENT = SHARED_IMAGES / "content" / "tubingen.jpg"
STYLE = SHARED_IMAGES / "style" / "starry_night.jpg"
STYLE2 = SHARED_IMAGES / "style" / "the_scream.jpg"


@pytest.fixture(scope="session")
def shared_images() -> Path:
    assert SHARED_IMAGES.is_dir(), f"test images missing: {SHARED_IMAGES}"
    return SHARED_IMAGES


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d
