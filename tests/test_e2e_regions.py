"""Regional styles end to end in a real headless Chromium: draw a region for each of two styles
on the Create page's canvas, generate a tiny run with the real engine, and find the masked run
in the Gallery's detail view with its masks. Screenshots go to test-artifacts/ (create-regions.png
is the README's, shrunk)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from gallery import Gallery
from harness.paths import CONTENT, STYLE, STYLE2
from harness.waiting import wait_for
from support.browser import (
    ARTIFACTS,
    chromium,
    css,
    expand,
    generated_run,
    go_to,
    needs_chromium,
    open_from_gallery,
    screenshot,
    scroll_to,
    small_cpu_run,
    studio_server,
    upload,
    wait_css,
    wait_idle,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow, needs_chromium]


def pick_radio(driver: Any, key: str, label: str) -> None:
    wait_for(lambda: [e for e in css(driver, f".st-key-{key} label") if e.text.strip() == label], 15,
             f"{label!r} in {key}")[0].click()
    wait_idle(driver)


def paint(driver: Any, x: float, top: float = 0.15, bottom: float = 0.85) -> None:
    """A vertical stroke at fraction `x` of the canvas' width. The canvas lives in the component's
    shadow root (Streamlit components v2 mount there, not in an iframe); Fabric.js listens on its
    upper canvas."""
    from selenium.webdriver.common.action_chains import ActionChains

    host = wait_css(driver, ".st-key-regions_canvas [data-testid='stBidiComponentIsolated']")
    upper = wait_for(lambda: [c for c in host.shadow_root.find_elements("css selector", "canvas.upper-canvas")
                              if c.size["width"] > 0], 30, "the drawing canvas")[0]
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", upper)
    time.sleep(0.3)
    w, h = upper.size["width"], upper.size["height"]
    steps = 12
    chain = ActionChains(driver).move_to_element_with_offset(upper, round((x - 0.5) * w), round((top - 0.5) * h))
    chain.click_and_hold()
    for _ in range(steps):
        chain.move_by_offset(0, round((bottom - top) * h / steps))
    chain.release().perform()
    wait_idle(driver)


def test_draw_two_regions_generate_and_find_the_masks(tmp_path: Path):
    data = tmp_path / "data"
    ARTIFACTS.mkdir(exist_ok=True)
    with studio_server(data, ARTIFACTS / "e2e-regions-server.log") as url, chromium(tmp_path / "dl") as driver:
        driver.get(url)
        wait_css(driver, ".st-key-generate", timeout=60)
        wait_idle(driver)
        upload(driver, "content_upload", CONTENT)
        wait_for(lambda: len(css(driver, "[data-testid='stImage']")) >= 1, 30, "the content thumbnail")
        for i, style in enumerate((STYLE, STYLE2), start=2):
            upload(driver, "style_upload", style)
            wait_for(lambda: len(css(driver, "[data-testid='stImage']")) >= i, 30, "the style thumbnail")
            wait_idle(driver)

        expand(driver, "Regions: where each style goes")
        pick_radio(driver, "regions_mode", "Draw regions")
        for x in (0.08, 0.2, 0.32):
            paint(driver, x)
        pick_radio(driver, "regions_brush", f"Style 2: {STYLE2.name}")
        for x in (0.68, 0.8, 0.92):
            paint(driver, x)
        wait_for(lambda: any(c.text == "The regions over the photo" for c in css(driver, "[data-testid='stCaptionContainer']")),
                 30, "the regions over the photo")
        scroll_to(driver, ".st-key-regions")
        screenshot(driver, ARTIFACTS / "create-regions.png")

        small_cpu_run(driver, size=64, iterations=5)  # a rerun: the drawing stays
        assert any(c.text == "The regions over the photo" for c in css(driver, "[data-testid='stCaptionContainer']"))

        run = generated_run(driver, data)
        assert run.status == "done", run.error
        run_id, g = run.id, Gallery(data)
        assert all(run.mask_sha256s), run.params.style_masks
        first, second = (Image.open(m) for m in run.params.style_masks)
        assert first.getpixel((first.width // 5, first.height // 2)) > 200  # painted for style 1
        assert second.getpixel((first.width // 5, first.height // 2)) < 50
        assert second.getpixel((first.width * 4 // 5, first.height // 2)) > 200

        go_to(driver, "Gallery")
        open_from_gallery(driver, run_id)
        wait_css(driver, ".st-key-download button", timeout=30)
        wait_idle(driver)
        captions = wait_for(lambda: [c.text for c in css(driver, "[data-testid='stImageCaption'], "
                                                                  "[data-testid='stCaptionContainer']")
                                     if c.text.startswith("Region: ")] or None, 30, "the masks in the detail view")
        assert set(captions) == {f"Region: {STYLE.name}", f"Region: {STYLE2.name}"}
        screenshot(driver, ARTIFACTS / "detail-regions.png")
        g.close()
