"""End to end in a real headless Chromium against `streamlit run`, with the real engine: upload a
3-frame GIF made from a photo, generate a tiny run, and find it in the Gallery marked as a clip,
its detail view playing an animated WebP of 3 frames, as the browser received it, and its frame
slider moved without the page (and the animation) sent again. Screenshots go to test-artifacts/."""
from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from PIL import Image
from selenium.webdriver.common.keys import Keys

from engine.clips import read_clip, write_gif
from gallery import Gallery
from harness.paths import STYLE
from harness.waiting import wait_for
from support.browser import (
    ARTIFACTS,
    chromium,
    css,
    generated_run,
    go_to,
    needs_chromium,
    open_from_gallery,
    screenshot,
    small_cpu_run,
    studio_server,
    upload,
    wait_css,
    wait_idle,
)
from support.images import pan

pytestmark = [pytest.mark.browser, pytest.mark.slow, needs_chromium]

DURATIONS = (120, 80, 100)
# What the page receives from the server, counted in the browser: every message of every socket.
COUNT_SOCKET_BYTES = """
window.socketBytes = 0;
const Socket = window.WebSocket;
window.WebSocket = class extends Socket {
  constructor(...args) {
    super(...args);
    this.addEventListener("message", e => { window.socketBytes += e.data.byteLength ?? e.data.size ?? e.data.length; });
  }
};
"""


def test_a_gif_becomes_an_animation_in_the_gallery(tmp_path: Path):
    data, downloads = tmp_path / "data", tmp_path / "downloads"
    gif = write_gif(pan(3, DURATIONS), tmp_path / "pan.gif")
    ARTIFACTS.mkdir(exist_ok=True)
    with studio_server(data, ARTIFACTS / "e2e-clips-server.log", STUDIO_DEVICES="cpu") as url, \
            chromium(downloads) as driver:
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": COUNT_SOCKET_BYTES})
        driver.get(url)
        wait_css(driver, ".st-key-generate", timeout=60)
        wait_idle(driver)
        upload(driver, "content_upload", gif)
        wait_for(lambda: "▶ 3 frames · 0.3 s" in driver.find_element("css selector", "[data-testid='stMain']").text,
                 30, "the clip's frames and length")
        upload(driver, "style_upload", STYLE)
        wait_for(lambda: len(css(driver, "[data-testid='stImage']")) >= 2, 30, "the style thumbnail")
        wait_idle(driver)
        small_cpu_run(driver, size=64, iterations=4, frame_iterations=2)
        screenshot(driver, ARTIFACTS / "clip-create.png")

        run = generated_run(driver, data)
        assert run.status == "done", run.error
        run_id, g = run.id, Gallery(data)

        go_to(driver, "Gallery")
        card = wait_css(driver, f".st-key-run-{run_id}")
        assert "▶ 3 frames" in card.text and card.find_elements("css selector", "img")
        screenshot(driver, ARTIFACTS / "clip-gallery.png")
        open_from_gallery(driver, run_id)
        animation = wait_css(driver, "img.animation", timeout=30)
        wait_idle(driver)
        wait_for(lambda: driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", animation),
                 15, "the browser to decode the animation")
        screenshot(driver, ARTIFACTS / "clip-detail.png")
        src = animation.get_attribute("src")
        assert src.startswith("data:image/webp;base64,")
        data = base64.b64decode(src.partition(",")[2])
        webp = Image.open(io.BytesIO(data))
        assert webp.format == "WEBP" and webp.n_frames == 3 and webp.size == (64, 48)
        assert read_clip(data).durations_ms == list(DURATIONS)
        assert css(driver, f".st-key-frame-{run_id}"), "the frame slider"

        # Moving the frame slider redraws the slider and its frame, not the page with the animation.
        driver.execute_script("window.socketBytes = 0")
        # The range input is drawn 1 px wide; a person would focus the thumb, then press an arrow.
        driver.execute_script("arguments[0].focus()", wait_css(driver, f".st-key-frame-{run_id} input", visible=False))
        driver.switch_to.active_element.send_keys(Keys.ARROW_RIGHT)
        wait_for(lambda: "Frame 2 of 3" in driver.find_element("css selector", "[data-testid='stMain']").text,
                 30, "frame 2")
        wait_idle(driver)
        received = driver.execute_script("return window.socketBytes")
        assert 0 < received < len(src) / 2, f"{received} bytes for a slider move; the animation is {len(src)}"
        assert css(driver, ".st-key-download_webp button") and css(driver, ".st-key-download_gif button")
        g.close()
