"""The studio served as `make run` serves it, and headless Chromium to look at it: one way to
start both, for the benchmarks that drive browsers (bench/watchers.py) and the browser tests
(tests/support/browser.py).

Only 127.0.0.1, on a free port. Only Debian's /usr/bin/chromium and /usr/bin/chromedriver: the
driver's path is given, so Selenium Manager never runs (and never downloads anything).
"""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from harness.paths import ROOT
from harness.waiting import GaveUp, wait_for

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
os.environ.setdefault("SE_OFFLINE", "true")  # belt and braces: Selenium Manager stays offline


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def studio_process(data_dir: Path, log_path: Path, *flags: str, **env: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """`streamlit run server.py` (as `make run` serves the studio) with its own data folder, its output in `log_path`, and
    Streamlit's `flags` on top; yields the URL and the server's process (to kill it)."""
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", "server.py", "--server.address", "127.0.0.1",
           "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false", *flags]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "STUDIO_DATA": str(data_dir), **env},
                                stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            def healthy() -> bool:
                if proc.poll() is not None:
                    raise GaveUp(f"streamlit exited with {proc.returncode}; see {log_path}")
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                        return r.status == 200
                except OSError:
                    return False  # not listening yet
            wait_for(healthy, 90, f"streamlit on port {port}", interval=0.5)
            yield url, proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def chromium_driver(width: int = 1440, height: int = 1000, download_dir: Path | None = None,
                    preexec: Callable[[], None] | None = None) -> Any:
    """A headless Chromium session with a profile of its own; downloads land in `download_dir`;
    `preexec` runs in the driver's process before it starts (the browser inherits it)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"--window-size={width},{height}",
                 "--hide-scrollbars"):
        options.add_argument(flag)
    if download_dir is not None:
        download_dir.mkdir(parents=True, exist_ok=True)
        options.add_experimental_option("prefs", {
            "download.default_directory": str(download_dir), "download.prompt_for_download": False,
            "download.directory_upgrade": True, "safebrowsing.enabled": False,
        })
    service = Service(executable_path=str(CHROMEDRIVER), popen_kw={"preexec_fn": preexec} if preexec else {})
    driver = webdriver.Chrome(service=service, options=options)
    if download_dir is not None:
        # Headless Chrome only saves downloads where it is told to, over CDP as well as prefs.
        driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(download_dir)})
    return driver
