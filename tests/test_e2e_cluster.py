"""The whole path once, in a real Chromium: the app started with STUDIO_RAY pointing at a real
two-node Ray cluster on 127.0.0.1; two jobs queued from the Create page run on both nodes, their
progress shows while they run, and the results land in the Gallery."""
from __future__ import annotations

from pathlib import Path

import pytest

from gallery import Gallery
from harness.paths import CONTENT, STYLE
from harness.ray_cluster import local_cluster
from harness.waiting import wait_for
from support.browser import (
    ARTIFACTS,
    chromium,
    click,
    go_to,
    needs_chromium,
    open_from_gallery,
    query_param,
    screenshot,
    scroll_to,
    set_number,
    small_cpu_run,
    studio_server,
    upload_photo_and_style,
    wait_css,
    wait_idle,
)

pytestmark = [pytest.mark.browser, pytest.mark.cluster, pytest.mark.slow, needs_chromium]


def test_jobs_from_the_create_page_run_on_the_cluster_and_land_in_the_gallery(tmp_path: Path):
    data = tmp_path / "data"
    ARTIFACTS.mkdir(exist_ok=True)
    with local_cluster(nodes=2, cpus=1) as cluster, \
            studio_server(data, ARTIFACTS / "e2e-cluster-server.log", STUDIO_RAY=cluster.address) as url, \
            chromium(tmp_path / "downloads") as driver:
        driver.get(url)
        wait_css(driver, ".st-key-generate", timeout=60)
        wait_idle(driver)
        upload_photo_and_style(driver, CONTENT, STYLE)
        small_cpu_run(driver, size=64, iterations=150, preview_every=10)

        ids = []
        for seed in (1, 2):
            set_number(driver, "p_seed", seed)
            click(driver, ".st-key-generate button")
            ids.append(int(wait_for(lambda: (r := query_param(driver.current_url, "run")) and int(r) not in ids and r,
                                    30, "the new run's id in the URL")))
        g = Gallery(data)
        # The second job's panel shows its progress bar while it runs on the cluster.
        wait_for(lambda: g.get(ids[1]).status == "running" and g.get(ids[1]).iteration > 0, 180, "the job running")
        wait_css(driver, ".st-key-job [data-testid='stProgress']", timeout=30)
        wait_for(lambda: "ray worker running" in driver.find_element("css selector", "[data-testid='stSidebar']").text,
                 30, "the sidebar's worker line")
        scroll_to(driver, ".st-key-job")
        screenshot(driver, ARTIFACTS / "cluster-create-progress.png")

        runs = wait_for(lambda: (rs := [g.get(i) for i in ids]) and all(r.status == "done" for r in rs) and rs,
                        300, "both runs done", interval=1)
        nodes = {r.worker.split(" on node ")[1].split()[0] for r in runs}
        assert len(nodes) == 2, [r.worker for r in runs]

        go_to(driver, "Gallery")
        for rid in ids:
            assert wait_css(driver, f".st-key-run-{rid}").find_elements("css selector", "img")
        open_from_gallery(driver, ids[0])
        wait_css(driver, ".st-key-download button", timeout=30)
        wait_idle(driver)
        main = driver.find_element("css selector", "[data-testid='stMain']").text
        assert "on node" in main, "the detail view says where the run ran"
        screenshot(driver, ARTIFACTS / "cluster-detail.png")
        assert query_param(driver.current_url, "run") == str(ids[0])
        g.close()
