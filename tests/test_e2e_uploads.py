"""Both images dropped on the Create page at once, in a real Chromium (finding 9 of the security
review): every upload is taken, however close together they arrive."""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.paths import CONTENT, STYLE
from harness.waiting import wait_for
from support.browser import chromium, css, needs_chromium, studio_server, wait_css, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow, needs_chromium]

TRIES = 10

# Sets each file input's files in one go, in the same turn of the page's event loop: as close
# together as two drops can be (Selenium's send_keys sets one, then the other, a round trip apart).
DROP = """
const files = arguments[0];
for (const [key, file] of Object.entries(files)) {
  const bytes = Uint8Array.from(atob(file.data), c => c.charCodeAt(0));
  const transfer = new DataTransfer();
  transfer.items.add(new File([bytes], file.name, {type: file.type}));
  const input = document.querySelector(`.st-key-${key} input[type='file']`);
  input.files = transfer.files;
  input.dispatchEvent(new Event("change", {bubbles: true}));
}
"""


def drop_at_once(driver, files: dict[str, Path]) -> None:
    import base64

    driver.execute_script(DROP, {key: {"name": path.name, "type": "image/jpeg",
                                       "data": base64.b64encode(path.read_bytes()).decode()}
                                 for key, path in files.items()})


def test_two_files_set_at_once_are_both_taken(tmp_path: Path):
    """Before, the first uploader's on_change did not always run when the second upload's rerun
    came while the first one's was starting: the content uploader showed its file, but the page
    had not taken it, and Generate stayed disabled with "Choose a content image" for good. A
    phone-sized photo (its check takes a moment) widens that window, as a busy server does."""
    from PIL import Image

    photo = tmp_path / "phone-photo.jpg"
    Image.open(CONTENT).resize((4800, 3600)).save(photo, quality=92)
    outcomes = []
    with studio_server(tmp_path / "data", tmp_path / "server.log", STUDIO_WORKER="0") as url, \
            chromium(tmp_path / "downloads") as driver:
        for _ in range(TRIES):
            driver.delete_all_cookies()  # a new browser as far as the server can tell: nothing chosen yet
            driver.get(url)
            wait_css(driver, ".st-key-generate", timeout=60)
            wait_idle(driver)
            drop_at_once(driver, {"content_upload": photo, "style_upload": STYLE})

            def settled() -> bool:
                button = css(driver, ".st-key-generate button")
                return bool(button) and not css(driver, '[data-testid="stStatusWidget"]') and \
                    len(css(driver, "[data-testid='stImage']")) >= 2 and button[0].is_enabled()
            try:
                wait_for(settled, 20, "both images taken and Generate enabled")
                outcomes.append("ok")
            except AssertionError:
                body = driver.find_element("css selector", "body").text
                outcomes.append("lost content" if "Choose a content image" in body else "lost style"
                                if "Choose at least one style" in body else "other")
    assert outcomes == ["ok"] * TRIES
