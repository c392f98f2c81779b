"""Drive the studio in a real headless Chromium: a server on a free port, a browser, helpers.

Used by the browser tests, and runnable to regenerate the README screenshots:

    .venv/bin/python tests/support/browser.py screenshots    # writes docs/screenshots/*.png

The server and the browser are started as the benchmarks start them (harness/studio.py): only
Debian's /usr/bin/chromium and /usr/bin/chromedriver, on 127.0.0.1.
"""
from __future__ import annotations

import contextlib
import io
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

if not __package__:  # run as a script: make engine, gallery and support importable, as pyproject.toml's pytest settings do
    _TESTS = Path(__file__).resolve().parents[1]
    sys.path[:0] = [str(_TESTS.parent), str(_TESTS)]

import pytest

from gallery import RunFilter
from harness.paths import ROOT, TEST_IMAGES
from harness.studio import CHROMIUM, chromium_driver
from harness.studio import studio_process as _studio_process
from harness.waiting import wait_for

ARTIFACTS = ROOT / "test-artifacts"
SCREENSHOTS = ROOT / "docs" / "screenshots"

# On every browser test, with its `browser` marker.
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (make test installs it)")


@contextlib.contextmanager
def studio_server(data_dir: Path, log_path: Path, **env: str) -> Iterator[str]:
    """`streamlit run server.py` on a free port with its own data folder; yields the URL."""
    with studio_process(data_dir, log_path, **env) as (url, _):
        yield url


@contextlib.contextmanager
def studio_process(data_dir: Path, log_path: Path, **env: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """studio_server, yielding the server's process too (to kill it)."""
    with _studio_process(data_dir, log_path, "--server.fileWatcherType", "none", **env) as found:
        yield found


@contextlib.contextmanager
def chromium(download_dir: Path, width: int = 1440, height: int = 1000) -> Iterator[Any]:
    driver = chromium_driver(width, height, download_dir)
    try:
        yield driver
    finally:
        driver.quit()


# --- page helpers -------------------------------------------------------------------------------

def query_param(url: str, name: str) -> str | None:
    values = parse_qs(urlparse(url).query).get(name)
    return values[0] if values else None


def css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def wait_css(driver: Any, selector: str, timeout: float = 30, visible: bool = True) -> Any:
    def found() -> Any:
        elements = [e for e in css(driver, selector) if e.is_displayed() or not visible]
        return elements[0] if elements else None
    return wait_for(found, timeout, selector)


def owner_of(driver: Any, timeout: float = 30) -> str:
    """Who the studio takes this browser for: the sidebar's "You are …"."""
    import re

    def said() -> str | None:
        found = re.search(r"You are (\w+)", css(driver, "[data-testid='stSidebar']")[0].text)
        return found.group(1) if found else None
    return wait_for(said, timeout, "the sidebar's owner id")


def click(driver: Any, selector: str, timeout: float = 30) -> None:
    def clicked() -> bool:
        element = wait_css(driver, selector, timeout=2)
        if not element.is_enabled():
            return False
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
        element.click()
        return True
    wait_for(clicked, timeout, f"clickable {selector}")


def open_from_gallery(driver: Any, run_id: int, timeout: float = 60) -> None:
    """Clicks a run's thumbnail on the Gallery page, as a person opens it (its Open button lies
    over the picture, invisible, so Selenium would not click the button itself)."""
    from selenium.webdriver.common.action_chains import ActionChains

    thumbnail = wait_css(driver, f".st-key-thumb-{run_id} img", timeout=timeout)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", thumbnail)
    ActionChains(driver).move_to_element(thumbnail).click().perform()
    wait_for(lambda: query_param(driver.current_url, "run") == str(run_id), 30, f"run {run_id}'s detail")


def wait_idle(driver: Any, timeout: float = 30) -> None:
    """Until Streamlit has finished the current script run (its status widget disappears)."""
    time.sleep(0.3)
    wait_for(lambda: not css(driver, '[data-testid="stStatusWidget"]'), timeout, "the script run to finish")


def set_number(driver: Any, key: str, value: Any) -> None:
    """Types into the number input with widget key `key` and commits it (Enter)."""
    from selenium.webdriver.common.keys import Keys

    field = wait_css(driver, f".st-key-{key} input")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", field)
    field.click()
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(str(value), Keys.ENTER)
    wait_for(lambda: css(driver, f".st-key-{key} input")[0].get_attribute("value") == str(value), 15,
             f"{key} = {value}")
    wait_idle(driver)


def choose_option(driver: Any, key: str, option: str) -> None:
    """Picks `option` in the selectbox with widget key `key`."""
    click(driver, f".st-key-{key} [role='combobox']")
    def pick() -> bool:
        for item in css(driver, "[role='option']"):
            if item.text.strip() == option:
                item.click()
                return True
        return False
    wait_for(pick, 15, f"option {option!r} of {key}")
    wait_idle(driver)


def upload(driver: Any, key: str, path: Path) -> None:
    """Sends a file to the file input inside the container with key `key`."""
    wait_css(driver, f".st-key-{key} input[type='file']", visible=False).send_keys(str(path))


def upload_photo_and_style(driver: Any, content: Path, style: Path) -> None:
    """Both inputs uploaded on the Create page, each shown before the next."""
    upload(driver, "content_upload", content)
    wait_for(lambda: len(css(driver, "[data-testid='stImage']")) >= 1, 30, "the content thumbnail")
    upload(driver, "style_upload", style)
    wait_for(lambda: len(css(driver, "[data-testid='stImage']")) >= 2, 30, "the style thumbnail")
    wait_idle(driver)


def small_cpu_run(driver: Any, **numbers: int) -> None:
    """The Create page's Advanced settings for a small run on the CPU: each p_NAME=value given."""
    expand(driver, "Advanced")
    for name, value in numbers.items():
        set_number(driver, f"p_{name}", value)
    choose_option(driver, "p_device", "cpu")


def generated_run(driver: Any, data_dir: Path, timeout: float = 600) -> Any:
    """Clicks Generate and waits for the run it queued to end; returns it (a gallery Run)."""
    from gallery import Gallery

    click(driver, ".st-key-generate button")
    run_id = int(wait_for(lambda: query_param(driver.current_url, "run"), 30, "the run id in the URL"))
    with Gallery(data_dir) as g:
        wait_for(lambda: g.get(run_id).status not in ("queued", "running"), timeout, "the run to finish", interval=1)
        return g.get(run_id)


def expand(driver: Any, label: str) -> None:
    from selenium.webdriver.common.by import By

    summary = wait_for(lambda: [s for s in driver.find_elements(By.CSS_SELECTOR, "[data-testid='stExpander'] summary")
                                if s.text.strip().endswith(label)], 15, f"expander {label}")[0]
    details = summary.find_element(By.XPATH, "..")
    if details.get_attribute("open") is None:
        summary.click()
    wait_idle(driver)


def go_to(driver: Any, page_title: str) -> None:
    """Clicks a page in the sidebar navigation."""
    from selenium.webdriver.common.by import By

    def link() -> Any:
        for a in driver.find_elements(By.CSS_SELECTOR, "a[data-testid='stSidebarNavLink']"):
            if a.text.strip().splitlines()[-1:] == [page_title]:  # the icon's ligature comes first
                return a
        return None
    wait_for(link, 15, f"nav link {page_title}").click()
    wait_for(lambda: any(h.text.strip() == page_title for h in css(driver, "h1")), 30, f"page {page_title}")
    wait_idle(driver)


def scroll_to(driver: Any, selector: str) -> None:
    driver.execute_script("document.querySelector(arguments[0]).scrollIntoView({block: 'start'})", selector)
    time.sleep(0.3)


def screenshot(driver: Any, path: Path, max_width: int | None = None, max_kb: int | None = None) -> Path:
    """Saves the viewport; with max_width/max_kb, shrunk for committing (README screenshots)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    data = driver.get_screenshot_as_png()
    if max_width is None and max_kb is None:
        path.write_bytes(data)
        return path
    img = Image.open(io.BytesIO(data)).convert("RGB")
    if max_width and img.width > max_width:
        img = img.resize((max_width, round(img.height * max_width / img.width)), Image.Resampling.LANCZOS)
    for colors in (256, 128, 64):
        out = io.BytesIO()
        img.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            out, "PNG", optimize=True)
        if max_kb is None or out.tell() <= max_kb * 1024:
            break
    path.write_bytes(out.getvalue())
    return path


# --- README screenshots -------------------------------------------------------------------------
# Real results only: the gallery is filled by the real worker and engine at small sizes (the CPU
# here is slow), and the running job is a real job of the server's own worker.

# (content, styles, changes, title) of the results shown in the gallery screenshot.
GALLERY_RUNS = (
    ("tubingen.jpg", ("starry_night.jpg",), {}, "Tübingen, starry"),
    ("tubingen.jpg", ("the_scream.jpg",), {}, ""),
    ("tubingen.jpg", ("seated-nude.jpg",), {"style_weight": 200.0}, ""),
    ("tubingen.jpg", ("starry_night.jpg",), {"original_colors": True}, "Original colours"),
    ("golden_gate.jpg", ("starry_night.jpg",), {}, "Golden Gate at night"),
    ("golden_gate.jpg", ("starry_night.jpg",), {"style_scale": 2.0}, "Bigger brush strokes"),
    ("golden_gate.jpg", ("starry_night.jpg", "the_scream.jpg"), {"style_blend": (5.0, 5.0)}, "Two styles"),
)


def _image(name: str) -> Path:
    return next(TEST_IMAGES.glob(f"*/{name}"))


def _fill_gallery(data: Path, size: int = 128, iterations: int = 40, timeout: float = 1800) -> Any:
    """Queues GALLERY_RUNS and lets a real worker compute them."""
    from engine.params import Params
    from gallery import Gallery
    from worker import Worker

    g = Gallery(data)
    for content, styles, changes, title in GALLERY_RUNS:
        params = Params(content=str(_image(content)), styles=tuple(str(_image(s)) for s in styles), size=size,
                        iterations=iterations, device="cpu", preview_every=20, **changes)
        g.submit(params, owner="lab00001", title=title)
    w = Worker(data, device="cpu")
    w.start()
    try:
        wait_for(lambda: g.count_runs(RunFilter(status="queued")) + g.count_runs(RunFilter(status="running")) == 0, timeout,
                 "the gallery's runs", 2.0)
    finally:
        w.stop()
    failed = [(r.id, r.status, r.error) for r in g.list_runs(limit=100) if r.status != "done"]
    assert not failed, failed
    g.set_favorite(1, True)
    return g


def make_screenshots(out_dir: Path = SCREENSHOTS) -> list[Path]:
    """docs/screenshots/: Create with Advanced open and an invalid setting named beside Generate,
    a running job's panel, the Done panel, the Gallery, a result's detail with Make a print open,
    and the Queue at 1400 px and at 420 px; all of real runs (see above)."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        data = tmp_path / "data"
        g = _fill_gallery(data)
        with studio_server(data, tmp_path / "server.log") as url:
            with chromium(tmp_path / "downloads", width=1400, height=900) as driver:
                try:
                    shots = _screenshot_tour(driver, url, g, out_dir)
                except BaseException:
                    screenshot(driver, ARTIFACTS / "screenshots-failure.png")
                    raise
            with chromium(tmp_path / "narrow", width=420, height=900) as driver:
                for page, name in (("/gallery", "gallery-420.png"), ("/queue", "queue-420.png")):
                    driver.get(url + page)
                    wait_css(driver, "h1", timeout=60)
                    wait_idle(driver)
                    time.sleep(1.5)
                    shots.append(screenshot(driver, out_dir / name, max_kb=200))
        g.close()
    return shots


def _shot(driver: Any, out_dir: Path, name: str) -> Path:
    return screenshot(driver, out_dir / name, max_width=1280, max_kb=300)


def _screenshot_tour(driver: Any, url: str, g: Any, out_dir: Path) -> list[Path]:
    driver.get(url)
    wait_css(driver, ".st-key-generate", timeout=60)
    upload(driver, "content_upload", _image("tubingen.jpg"))
    wait_for(lambda: len(css(driver, "[data-testid='stImage']")) >= 1, 60, "the content thumbnail")
    upload(driver, "style_upload", _image("the_scream.jpg"))
    wait_for(lambda: len(css(driver, "[data-testid='stImage']")) >= 2, 60, "the style thumbnail")
    wait_idle(driver)
    expand(driver, "Advanced")
    set_number(driver, "p_temporal_weight", -1)
    scroll_to(driver, ".st-key-p_frame_iterations")
    shots = [_shot(driver, out_dir, "create-advanced.png")]
    set_number(driver, "p_temporal_weight", 10000)
    set_number(driver, "p_size", 256)  # small enough to finish soon on a CPU
    set_number(driver, "p_iterations", 60)
    expand(driver, "Advanced")
    click(driver, ".st-key-generate button")  # the "balanced" preset, computed by the server's worker
    wait_css(driver, ".st-key-job [data-testid='stImage']", timeout=300)
    time.sleep(1.5)
    scroll_to(driver, "h1")
    shots.append(_shot(driver, out_dir, "create-running.png"))
    go_to(driver, "Queue")
    time.sleep(2)
    shots.append(_shot(driver, out_dir, "queue.png"))
    go_to(driver, "Gallery")
    wait_for(lambda: len(css(driver, "[class*='st-key-run-'] img")) >= len(GALLERY_RUNS), 60,
             "the gallery's thumbnails")
    time.sleep(1)
    shots.append(_shot(driver, out_dir, "gallery.png"))
    driver.get(f"{url}/gallery?run=1")  # a result's detail, with Make a print open
    wait_css(driver, ".st-key-back", timeout=60)
    wait_idle(driver)
    click(driver, "[data-testid='stPopover'] button")
    wait_for(lambda: next((e for e in css(driver, "[data-testid='stPopoverBody'] label") if e.text.strip() == "4×"), None),
             30, "the print's size choices").click()
    wait_idle(driver)
    time.sleep(1)
    shots.append(_shot(driver, out_dir, "make-a-print.png"))
    go_to(driver, "Create")
    wait_for(lambda: "Done" in wait_css(driver, ".st-key-job h3", timeout=30).text, 1800, "the job to finish", 2.0)
    time.sleep(1.5)
    scroll_to(driver, "h1")
    shots.append(_shot(driver, out_dir, "create-done.png"))
    return shots


if __name__ == "__main__":
    if sys.argv[1:] != ["screenshots"]:
        sys.exit(f"usage: {sys.argv[0]} screenshots")
    for shot in make_screenshots():
        print(shot, f"{shot.stat().st_size // 1024} KB")
