"""Where things are: the repository and the real test images in ../shared/images."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Resolved: the app stores resolved paths, and ../shared may be a link to the real folder.
# STUDIO_TEST_IMAGES points elsewhere where there is no ../shared (a lent GPU machine).
SHARED_IMAGES = Path(os.environ.get("STUDIO_TEST_IMAGES") or ROOT.parent / "shared" / "images").resolve()
CONTENT = SHARED_IMAGES / "content" / "tubingen.jpg"
STYLE = SHARED_IMAGES / "style" / "starry_night.jpg"
STYLE2 = SHARED_IMAGES / "style" / "the_scream.jpg"
