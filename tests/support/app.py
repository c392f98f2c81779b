"""The AppTest set-up of the page tests: the whole app on a page, and a worker played by hand.

The page tests run no worker (STUDIO_WORKER=0, the `studio` fixture in conftest.py): they play it
themselves through the gallery API, which makes every state (queued, running with a preview,
done, failed) quick and deterministic.
"""
from __future__ import annotations

import re

from PIL import Image
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import FileUploader

from engine.params import Params, preset
from gallery import Gallery
from harness.paths import CONTENT, ROOT, STYLE
from support.runs import fake_result

APP = str(ROOT / "streamlit_app.py")


def app(page: str | None = None, owner: str | None = None, query: dict[str, str] | None = None,
        **params: str) -> AppTest:
    """The whole app (navigation included) on `page`, after one run, with `query` and `params` in
    its URL; `owner`: who this browser is (a real one is told by its XSRF cookie, which AppTest
    does not send)."""
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update({**(query or {}), **params})
    if owner:
        at.session_state["owner"] = owner
    at.run()
    if page:
        at.switch_page(page).run()
    return at


def shown(markdown: str) -> str:
    """What a person reads of Markdown the app wrote with common.escape_md (the escapes and the
    invisible word joiners gone)."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown).replace("\u2060", "")


def assert_ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def uploader(at: AppTest, kind: str) -> FileUploader:
    # The uploader is re-keyed (emptied) after each upload; its container key stays.
    return next(u for u in at.file_uploader if u.key.startswith(f"{kind}_file_"))


def small_params(**changes) -> Params:
    base = {"content": str(CONTENT), "styles": (str(STYLE),), "size": 64, "iterations": 10, "device": "cpu"}
    return preset("draft", **{**base, **changes})


def play_worker(g: Gallery, until: str = "done", iteration: int = 4) -> int:
    """Takes the next queued run as a worker would and leaves it `until` ("running", "done" or
    "failed"); returns its id."""
    run = g.claim_next("test-worker")
    assert run is not None, "nothing queued"
    if until == "running":
        g.record_progress(run.id, iteration, run.total, {"total": 20.0, "content": 4.0, "style": 15.0, "tv": 1.0},
                          [(iteration, Image.new("RGB", (64, 48), "teal"))])
    elif until == "done":
        # Previews at iterations 5 and 10 of small_params()' 10, for the Gallery's scrubber.
        g.finish(run.id, fake_result("orange", previews=2, size=(64, 48), preview_every=5))
    else:
        g.fail(run.id, "The device ran out of memory; try a smaller size.")
    return run.id
