"""Where things are: the repository, and the real test images (../shared/images, or
$STUDIO_TEST_IMAGES where there is no ../shared) that the tests and the benchmarks use."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Resolved: the app stores resolved paths, and ../shared may be a link to the real folder.
# STUDIO_TEST_IMAGES points elsewhere where there is no ../shared (a lent GPU machine).
TEST_IMAGES = Path(os.environ.get("STUDIO_TEST_IMAGES") or ROOT.parent / "shared" / "images").resolve()
CONTENT = TEST_IMAGES / "content" / "tubingen.jpg"
STYLE = TEST_IMAGES / "style" / "starry_night.jpg"
STYLE2 = TEST_IMAGES / "style" / "the_scream.jpg"
