"""Makes tests/data/gallery_v1/: a data folder written by the gallery as it was at schema
version 1 (commit 275bb56), for tests/test_gallery_migration.py. Kept to show how the fixture
was made; running it with later code would make a later schema, so it is not run by tests.

    git worktree add /tmp/v1 275bb56 && cd /tmp/v1 && PYTHONPATH=. python /path/to/make_gallery_v1.py OUT
"""
from __future__ import annotations

import io
import random
import sys
from pathlib import Path
from types import SimpleNamespace

from PIL import Image

from engine.params import Params
from gallery import Gallery


def picture(seed: int, size: tuple[int, int] = (40, 30)) -> bytes:
    rng = random.Random(seed)
    img = Image.new("RGB", size)
    img.putdata([(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(size[0] * size[1])])
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def result(color: str, device: str) -> SimpleNamespace:
    return SimpleNamespace(
        image=Image.new("RGB", (40, 30), color), losses={"total": 1.5, "content": 1.0, "style": 0.5, "tv": 0.0},
        timings={"setup": 0.1, "optimize": 0.2, "total": 0.3},
        previews=[(1, Image.new("RGB", (40, 30), "gray")), (2, Image.new("RGB", (40, 30), "white"))],
        weights_name="caffe", weights_sha256="ab" * 32, device=device)


def main(out: Path) -> None:
    g = Gallery(out)
    content = g.add_input(picture(1), "harbour.png", "content")
    style = g.add_input(picture(2), "starry.png", "style")
    mask = g.add_input(picture(3), "left.png")

    def params(**changes) -> Params:
        return Params(content=str(content.path), styles=(str(style.path),), size=32, iterations=2,
                      multiscale=False, **changes)

    plain = g.submit(params(device="cpu"), owner="ada", title="plain", tags="harbour, night")
    g.claim(plain, "w")
    g.finish(plain, result("red", "cpu"))
    g.set_favorite(plain)
    evaluated = g.submit(params(device="auto", style_masks=(str(mask.path),)), owner="bob", title="evaluated")
    g.claim(evaluated, "w")
    g.finish(evaluated, result("blue", "cpu (channels_last+bf16)"))
    failed = g.submit(params(device="cpu"), title="failed")
    g.claim(failed, "w")
    g.fail(failed, "out of memory")
    g.submit(params(device="cuda"), title="queued")
    g.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
