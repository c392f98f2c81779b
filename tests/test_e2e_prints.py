"""Make a print, in a real Chromium against the real server and worker: a small result grown to
twice its size, starting from it; each detail view links the other."""
from __future__ import annotations

from pathlib import Path

import pytest

from gallery import Gallery
from harness.waiting import wait_for
from support.app import small_params
from support.browser import chromium, click, needs_chromium, query_param, set_number, studio_server, wait_css

pytestmark = [pytest.mark.browser, pytest.mark.slow, needs_chromium]


def test_a_print_grows_from_a_result_and_the_two_link_each_other(tmp_path: Path):
    data = tmp_path / "data"
    with studio_server(data, tmp_path / "server.log", STUDIO_DEVICES="cpu") as url, \
            chromium(tmp_path / "downloads", width=1400, height=900) as driver, Gallery(data) as g:
        source = g.submit(small_params(size=64, iterations=10))
        driver.get(url)  # the first page starts the workers
        wait_for(lambda: g.get(source).status == "done", 300, "the small result", interval=1)
        driver.get(f"{url}/gallery?run={source}")
        click(driver, "[data-testid='stPopover'] button")  # Make a print
        set_number(driver, "print_iterations", 5)
        click(driver, ".st-key-make_print button")
        made = int(wait_for(lambda: "/gallery" not in driver.current_url and query_param(driver.current_url, "run"),
                            30, "the print's job panel"))
        print_run = g.get(made)
        assert print_run.grown_from == source and print_run.params.size == 128 and print_run.params.iterations == 5
        assert print_run.params.init == "image" and print_run.params.scale_sizes() == [128]
        wait_for(lambda: "Done" in wait_css(driver, ".st-key-job h3").text, 300, "the print to finish", 1.0)
        assert g.get(made).status == "done"

        driver.get(f"{url}/gallery?run={made}")
        click(driver, ".st-key-grown_from button")
        wait_for(lambda: query_param(driver.current_url, "run") == str(source), 30, "the source's detail")
        click(driver, f".st-key-print-{made} button")
        wait_for(lambda: query_param(driver.current_url, "run") == str(made), 30, "the print's detail")
