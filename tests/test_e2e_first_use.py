"""The app as a first-time user meets it, in a real Chromium at 1400×900 (and the Queue at 420 px
wide): the findings of issue 32's walk-through, one test each. A server without workers; the
jobs' states are written through the gallery as a worker would (test 5 runs a real one)."""
from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from gallery import Gallery
from gallery.times import iso
from harness.paths import CONTENT, STYLE
from harness.waiting import wait_for
from support.app import small_params
from support.browser import (
    ARTIFACTS,
    chromium,
    click,
    css,
    expand,
    needs_chromium,
    open_from_gallery,
    owner_of,
    query_param,
    screenshot,
    set_number,
    studio_process,
    studio_server,
    upload_photo_and_style,
    wait_css,
    wait_idle,
)
from support.runs import fake_result

pytestmark = [pytest.mark.browser, pytest.mark.slow, needs_chromium]


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Gallery, Path]]:
    tmp = tmp_path_factory.mktemp("first-use")
    data = tmp / "data"
    with studio_process(data, tmp / "server.log", STUDIO_WORKER="0") as (url, _), Gallery(data) as g:
        yield url, g, tmp


@pytest.fixture
def browser(studio: tuple[str, Gallery, Path]) -> Iterator[Any]:
    url, _, tmp = studio
    with chromium(tmp / "downloads", width=1400, height=900) as driver:
        driver.get(url)
        wait_css(driver, ".st-key-generate", timeout=60)
        wait_idle(driver)
        yield driver


def done_run(g: Gallery, owner: str, colour: str = "orange", **changes: Any) -> int:
    rid = g.submit(small_params(**changes), owner=owner)
    g.finish(g.claim(rid, "cpu@test:1").id, fake_result(colour, previews=2, size=(64, 48), preview_every=5))
    return rid


def body(driver: Any) -> str:
    return css(driver, "body")[0].text


def visible_in_window(driver: Any, element: Any) -> bool:
    return driver.execute_script(
        "const r = arguments[0].getBoundingClientRect(); return r.top >= 0 && r.bottom <= window.innerHeight;",
        element)


def test_1_an_invalid_setting_is_named_beside_generate(browser: Any) -> None:
    """Before: Generate disabled, "Fix the settings marked above" under it, and the mark inside a
    collapsed (or scrolled) Advanced: nothing on screen said what was wrong."""
    upload_photo_and_style(browser, CONTENT, STYLE)
    expand(browser, "Advanced")
    set_number(browser, "p_temporal_weight", -1)
    expand(browser, "Advanced")  # closed again, as a person leaves it
    generate = wait_css(browser, ".st-key-generate button")
    assert not generate.is_enabled()
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", generate)
    alert = wait_for(lambda: [a for a in css(browser, "[data-testid='stAlert']") if "Temporal weight" in a.text],
                     15, "the message beside Generate")[0]
    assert "must be at least 0" in alert.text and visible_in_window(browser, alert)


def test_2_advanced_hides_nothing_behind_a_box_of_its_own(browser: Any) -> None:
    """Before: Advanced was a 440 px box scrolling inside the page, with no visible scrollbar;
    it seemed to end at an empty "Optimisation" heading."""
    expand(browser, "Advanced")
    boxes = browser.execute_script("""
        const details = [...document.querySelectorAll("[data-testid='stExpander'] details")]
            .find(d => d.querySelector("summary").innerText.trim().endsWith("Advanced"));
        return [...details.querySelectorAll("*")].filter(e => {
            const y = getComputedStyle(e).overflowY;
            return (y === "auto" || y === "scroll") && e.scrollHeight > e.clientHeight + 2 && e.tagName !== "TEXTAREA";
        }).length;""")
    assert boxes == 0  # so the page's own scrolling reaches every field: nothing is clipped
    for key in ("p_optimizer", "p_seed", "p_device", "p_frame_iterations", "p_style_layers"):
        wait_css(browser, f".st-key-{key}")


def test_3_a_waiting_job_starts_no_sooner_than_the_running_one_ends(studio: tuple[str, Gallery, Path],
                                                                     browser: Any) -> None:
    """Before: running #3 showed "ETA 1 min 18 s" while #4, waiting behind it, said "Starts in
    about 18 s"."""
    url, g, _ = studio
    done_run(g, "someone1")  # the machine's speed: a quick run
    running = g.submit(small_params(multiscale=False), owner="someone1")
    g.claim(running, "cpu@test:1")
    g.db.execute("UPDATE runs SET started = ? WHERE id = ?",
                 [iso(datetime.now(UTC) - timedelta(seconds=78)), running])
    g.record_progress(running, 5, 10, {"total": 1.0})  # half done in 78 s: about 78 s to go
    waiting = g.submit(small_params(), owner="someone1")
    try:
        browser.get(f"{url}/queue")
        said = wait_for(lambda: re.search(r"[Ss]tarts in about ([^\n]+)", body(browser)), 60, "the waiting run's start")
        assert said.group(1).startswith("1 min"), said.group(0)  # 78 s from now, not the model's few seconds
    finally:
        g.fail(running, "test over")
        g.request_cancel(waiting)


def test_4_the_losses_fit_their_card_and_add_up(studio: tuple[str, Gallery, Path], browser: Any) -> None:
    """Before: the losses table crossed the job card's border, and its parts were unweighted
    beside a weighted total (tv 9.6e7 beside a total of 4.5e6)."""
    url, g, _ = studio
    rid = g.submit(small_params(), owner=owner_of(browser))
    g.claim(rid, "cpu@test:1")
    g.record_progress(rid, 4, 10, {"total": 4.5e6, "content": 2e5, "style": 3e4, "tv": 9.6e7, "temporal": 3.0},
                      [(4, Image.new("RGB", (64, 48), "teal"))])
    try:
        browser.get(f"{url}/?run={rid}")
        table = wait_css(browser, ".st-key-job table", timeout=60)
        card = wait_css(browser, ".st-key-job")
        right = browser.execute_script("return [arguments[0].getBoundingClientRect().right, "
                                       "arguments[1].getBoundingClientRect().right]", table, card)
        assert right[0] <= right[1]
        assert "tv 9.6e+04" in table.text.replace("\n", " ")  # 9.6e7 × the TV weight 0.001
    finally:
        g.fail(rid, "test over")


def test_6_the_result_is_drawn_as_large_as_its_preview(studio: tuple[str, Gallery, Path], browser: Any) -> None:
    """Before: the live preview filled the card, then the finished result shrank to its own
    pixels (64 px here)."""
    url, g, _ = studio
    rid = done_run(g, owner_of(browser))
    browser.get(f"{url}/?run={rid}")
    image = wait_css(browser, ".st-key-job [data-testid='stImage'] img", timeout=60)
    card = wait_css(browser, ".st-key-job")
    widths = browser.execute_script("return [arguments[0].getBoundingClientRect().width, "
                                    "arguments[1].getBoundingClientRect().width]", image, card)
    assert widths[0] > 0.8 * widths[1], widths


def test_7_a_result_is_one_click_from_its_file(studio: tuple[str, Gallery, Path], browser: Any) -> None:
    """Before: no download on the Done panel, Queue rows that were not links, Gallery thumbnails
    that did nothing, files called style-run-N.png."""
    url, g, tmp = studio
    rid = done_run(g, owner_of(browser))
    browser.get(f"{url}/?run={rid}")
    click(browser, ".st-key-download_result button")
    name = f"tubingen-starry_night-run{rid}-64px.png"
    wait_for(lambda: (tmp / "downloads" / name).is_file(), 30, "the download")
    browser.get(f"{url}/queue")
    link = wait_css(browser, f".st-key-qrow-{rid} a", timeout=60)
    link.click()
    wait_for(lambda: query_param(browser.current_url, "run") == str(rid) and "/gallery" in browser.current_url, 30,
             "the run's detail from the Queue")
    wait_css(browser, ".st-key-back", timeout=30)
    browser.get(f"{url}/gallery")
    open_from_gallery(browser, rid)
    assert len(browser.window_handles) == 1  # in this tab


def test_8_a_shared_link_does_not_make_its_reader_its_sender(studio: tuple[str, Gallery, Path], browser: Any) -> None:
    """Before: "Open in gallery" and Re-run put ?owner=… in the URL; opened in another browser,
    it became that owner."""
    url, g, tmp = studio
    sender = owner_of(browser)
    rid = done_run(g, sender)
    browser.get(f"{url}/?run={rid}")
    wait_for(lambda: [e for e in css(browser, ".st-key-job a, .st-key-job button") if "Open in gallery" in e.text],
             60, "Open in gallery")[0].click()
    wait_css(browser, ".st-key-back", timeout=60)  # the run's detail
    shared = browser.current_url  # what a person copies from the address bar and sends
    with chromium(tmp / "other-downloads", width=1400, height=900) as other:
        other.get(shared)
        wait_css(other, ".st-key-back", timeout=60)
        assert owner_of(other) != sender, shared


def test_9_a_reload_keeps_the_chosen_images_and_preset(studio: tuple[str, Gallery, Path], browser: Any) -> None:
    """Before: a reload (a new session) lost both; only the job panel survived."""
    url, _, _ = studio
    upload_photo_and_style(browser, CONTENT, STYLE)
    click(browser, ".st-key-preset [aria-checked='false']")  # "draft", the first not chosen
    wait_idle(browser)
    browser.refresh()
    wait_css(browser, ".st-key-generate", timeout=60)
    wait_for(lambda: len(css(browser, "[class*='_thumbnails'] [data-testid='stImage']")) == 2, 30,
             "both images back")
    pressed = [b.text for b in css(browser, ".st-key-preset [aria-checked='true']")]
    assert pressed == ["draft"], pressed
    assert wait_css(browser, ".st-key-generate button").is_enabled()


def test_11_the_queue_reads_at_420_px(studio: tuple[str, Gallery, Path]) -> None:
    """Before: at 420 px the Queue's columns stacked into a row of header labels followed by
    unlabelled values."""
    url, g, tmp = studio
    rid = done_run(g, "someone1")
    with chromium(tmp / "narrow", width=420, height=900) as driver:
        driver.get(f"{url}/queue")
        wait_for(lambda: f"#{rid}" in body(driver), 60, "the run in the queue")
        wait_idle(driver)
        assert "Owner: someone1" in body(driver)  # each value says what it is
        assert not [c for c in css(driver, "[data-testid='stCaptionContainer']") if c.text.strip() in ("Owner", "Status")]
        ARTIFACTS.mkdir(exist_ok=True)
        screenshot(driver, ARTIFACTS / "queue-420.png")


@pytest.mark.slow
def test_5_the_sidebar_says_what_the_page_says(tmp_path: Path) -> None:
    """A real worker and a real job. Before: the sidebar's worker line was polled every 5 s: it
    said "idle" beside a running job, and "running #3" after #3 had finished."""
    data = tmp_path / "data"
    with studio_server(data, tmp_path / "server.log", STUDIO_DEVICES="cpu") as url, \
            chromium(tmp_path / "downloads", width=1400, height=900) as driver, Gallery(data) as g:
        driver.get(url)
        wait_css(driver, ".st-key-generate", timeout=60)
        wait_for(lambda: "cpu worker idle" in css(driver, "[data-testid='stSidebar']")[0].text, 60, "the worker")
        rid = g.submit(small_params(size=96, iterations=40, multiscale=False), owner=owner_of(driver))
        driver.get(f"{url}/?run={rid}")
        disagreed, since = 0.0, None
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            panel = " ".join(h.text for h in css(driver, ".st-key-job h3"))
            side = " ".join(s.text for s in css(driver, "[data-testid='stSidebar']"))
            wrong = ("Running" in panel and f"running #{rid}" not in side) or ("Done" in panel and "idle" not in side)
            now = time.monotonic()
            since = (since or now) if wrong else None
            disagreed = max(disagreed, now - since) if since else disagreed
            if "Done" in panel and not wrong:
                break
            time.sleep(0.2)
        assert g.get(rid).status == "done"
        assert disagreed < 2.0, f"the sidebar disagreed with the job panel for {disagreed:.1f} s"


PASTE = """
const bytes = Uint8Array.from(atob(arguments[1]), c => c.charCodeAt(0));
const transfer = new DataTransfer();
transfer.items.add(new File([bytes], "clipboard.png", {type: "image/png"}));
arguments[0].dispatchEvent(new ClipboardEvent("paste", {clipboardData: transfer, bubbles: true, cancelable: true}));
"""


def test_an_image_pasted_from_the_clipboard_becomes_the_content(browser: Any) -> None:
    """Ctrl+V into the Paste box, then Enter: as A1111's and InvokeAI's image inputs take it."""
    import base64
    import io

    from selenium.webdriver.common.keys import Keys

    picture = io.BytesIO()
    Image.open(CONTENT).resize((160, 120)).save(picture, "PNG")
    click(browser, "[data-testid='stPopover'] button")  # the first: the content's
    box = wait_css(browser, "[data-testid='stChatInputTextArea']")
    browser.execute_script(PASTE, box, base64.b64encode(picture.getvalue()).decode())
    wait_css(browser, "[data-testid='stFileChip']", timeout=15)

    def taken() -> bool:
        if len(css(browser, "[class*='content_thumbnails'] [data-testid='stImage']")) == 1:
            return True
        if css(browser, "[data-testid='stFileChip']"):  # Enter is ignored while the file still uploads
            css(browser, "[data-testid='stChatInputTextArea']")[0].send_keys(Keys.ENTER)
        return False
    wait_for(taken, 30, "the pasted image as the content", interval=1.0)
