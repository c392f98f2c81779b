"""End to end in a real headless Chromium against `streamlit run`, with the real engine: upload,
set a tiny run, generate, watch progress, find it in the Gallery, download the PNG (parameters
embedded), delete it. Screenshots of each page go to test-artifacts/."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from engine.pngmeta import read_params_json
from gallery import Gallery
from harness.paths import CONTENT, STYLE
from harness.waiting import wait_for
from support.browser import (
    ARTIFACTS,
    chromium,
    click,
    css,
    go_to,
    needs_chromium,
    open_from_gallery,
    owner_of,
    query_param,
    screenshot,
    scroll_to,
    small_cpu_run,
    studio_server,
    upload_photo_and_style,
    wait_css,
    wait_idle,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow, needs_chromium]


def test_generate_watch_browse_download_delete(tmp_path: Path):
    data, downloads = tmp_path / "data", tmp_path / "downloads"
    ARTIFACTS.mkdir(exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    with studio_server(data, ARTIFACTS / "e2e-server.log") as url, chromium(downloads) as driver:
        timings["server+browser"] = time.monotonic() - t0
        driver.get(url)
        wait_css(driver, ".st-key-generate", timeout=60)
        wait_idle(driver)
        owner = owner_of(driver)

        upload_photo_and_style(driver, CONTENT, STYLE)
        small_cpu_run(driver, size=64, iterations=10, preview_every=2)
        screenshot(driver, ARTIFACTS / "create.png")

        t1 = time.monotonic()
        click(driver, ".st-key-generate button")
        run_id = int(wait_for(lambda: query_param(driver.current_url, "run"), 30, "the run id in the URL"))
        # Progress appears without reloading the page: the bar while queued/running, or the result.
        wait_css(driver, ".st-key-job [data-testid='stProgress'], .st-key-job [data-testid='stImage']", timeout=60)
        scroll_to(driver, "h1")
        screenshot(driver, ARTIFACTS / "create-progress.png")
        g = Gallery(data)
        wait_for(lambda: g.get(run_id).status not in ("queued", "running"), 600, "the run to finish", interval=1)
        timings["generate"] = time.monotonic() - t1
        run = g.get(run_id)
        assert run.status == "done", run.error
        assert run.owner == owner
        wait_for(lambda: "Done" in wait_css(driver, ".st-key-job h3").text, 30, "the job panel to say Done")
        scroll_to(driver, "h1")
        screenshot(driver, ARTIFACTS / "create-done.png")

        go_to(driver, "Queue")
        wait_for(lambda: f"#{run_id}" in driver.find_element("css selector", "[data-testid='stMain']").text, 30,
                 "the run in the queue")
        screenshot(driver, ARTIFACTS / "queue.png")

        go_to(driver, "Gallery")
        card = wait_css(driver, f".st-key-run-{run_id}")
        assert card.find_elements("css selector", "img"), "the card shows a thumbnail"
        screenshot(driver, ARTIFACTS / "gallery.png")
        open_from_gallery(driver, run_id)
        wait_css(driver, ".st-key-download button", timeout=30)
        wait_idle(driver)
        screenshot(driver, ARTIFACTS / "detail.png")

        click(driver, ".st-key-download button")
        png = wait_for(lambda: [p for p in downloads.glob("*.png")], 30, "the downloaded PNG")[0]
        wait_for(lambda: not list(downloads.glob("*.crdownload")), 30, "the download to complete")
        params = json.loads(read_params_json(png.read_bytes()))
        assert (params["size"], params["iterations"], params["device"]) == (64, 10, "cpu")
        assert params["preview_every"] == 2

        click(driver, ".st-key-delete button")
        wait_css(driver, "[role='dialog'] .st-key-confirm_delete button", timeout=15)
        screenshot(driver, ARTIFACTS / "delete-confirm.png")
        click(driver, ".st-key-confirm_delete button")
        wait_for(lambda: g.count_runs() == 0, 30, "the run to be deleted")
        wait_for(lambda: not css(driver, f".st-key-run-{run_id}") and query_param(driver.current_url, "run") is None,
                 30, "the gallery without the run")
        assert not g.run_dir(run_id).exists()
        g.close()
    timings["total"] = time.monotonic() - t0
    (ARTIFACTS / "e2e-timings.json").write_text(json.dumps(timings, indent=2))
