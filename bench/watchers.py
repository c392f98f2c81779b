"""`python -m bench.watchers`: does watching a job slow it down? Measured in one run.

    python -m bench.watchers [watch] [--sessions 4 8] [--rounds 3] [--size 256] [--iterations 100]
    python -m bench.watchers load [--sessions 8] [--jobs 3] [--size 128] [--iterations 100]

`watch` serves the app as `make run` does (its own data folder, its own worker processes),
runs one "draft" job (tubingen + starry_night) with nobody watching, then the same job watched
by 4 and by 8 headless Chromium sessions, each on the job's panel of the Create page, the
browsers at nice 19 so that they take only spare CPU. Durations come from the gallery; the
server's CPU is read from /proc, and what watching costs it is the CPU it used beyond the solo
run's, per session and minute.

`load` times the same small job alone, then has every session queue `--jobs` of them at once
and watch the newest, while one more session, a browser at normal priority as someone at the
machine would use, clicks on the Create page and times each answer (from the click until
Streamlit's script run has finished).

Figures, not assertions: the report says how each compares with docs/performance.md's targets.
Only Debian's /usr/bin/chromium and /usr/bin/chromedriver are used, and only 127.0.0.1.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.finished import Finished
from engine.params import preset
from gallery import Gallery
from harness.paths import CONTENT, STYLE
from harness.studio import chromium_driver, studio_process
from harness.waiting import wait_for

TICKS = os.sysconf("SC_CLK_TCK")
BROWSER_NICE = 19
PRESET_BUTTONS = ".st-key-preset button[role='radio']"  # the Create page's presets (app_pages/params_form.py)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process (its own threads, not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


@contextlib.contextmanager
def browsers(count: int, idle: bool = True) -> Iterator[list[Any]]:
    """`count` headless Chromium sessions (own profiles), at idle priority unless `idle` is false
    (a person working at the machine)."""
    def one(_: int) -> Any:
        return chromium_driver(preexec=idle_priority if idle else None)

    drivers: list[Any] = []
    try:
        with ThreadPoolExecutor(4) as pool:
            drivers.extend(pool.map(one, range(count)))
        yield drivers
    finally:
        for driver in drivers:
            driver.quit()


def idle_priority() -> None:
    """Nice 19, and the SCHED_IDLE policy as well: Chromium sets its processes' nice values
    itself (to 0 and -8 when run as root), which would put the browsers back level with the job,
    but it leaves the policy alone, and SCHED_IDLE runs only on otherwise idle cores."""
    os.nice(BROWSER_NICE)
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def browser_policies() -> str:
    """What the browsers' processes run at, counted: proof that they only took spare CPU."""
    seen: dict[str, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name = stat.read_text().split("(", 1)[1].split(")", 1)[0]
            if name.startswith(("chrom", "chrome")):
                pid = int(stat.parent.name)
                policy = {os.SCHED_IDLE: "SCHED_IDLE", os.SCHED_OTHER: "SCHED_OTHER"}.get(
                    os.sched_getscheduler(pid), "other")
                label = f"{policy} nice {os.getpriority(os.PRIO_PROCESS, pid)}"
                seen[label] = seen.get(label, 0) + 1
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    return ", ".join(f"{n} at {label}" for label, n in sorted(seen.items())) or "none"


def script_idle(driver: Any) -> bool:
    return not driver.find_elements("css selector", '[data-testid="stStatusWidget"]')


def open_all(drivers: list[Any], url: str) -> None:
    """Every session on `url`, loaded side by side (as people arriving at once would)."""
    if drivers:
        with ThreadPoolExecutor(len(drivers)) as pool:
            list(pool.map(lambda d: d.get(url), drivers))


def add_images(g: Gallery) -> tuple[str, str]:
    content = g.add_input(CONTENT.read_bytes(), CONTENT.name, kind="content")
    style = g.add_input(STYLE.read_bytes(), STYLE.name, kind="style")
    return str(g.input_path(content.sha256)), str(g.input_path(style.sha256))


@dataclass
class Watched:
    sessions: int
    duration: float      # the job's, as the gallery records it
    server_cpu: float    # the server process's CPU seconds while the job ran
    wall: float          # seconds from submit to done
    browsers: str        # the browsers' processes and their priorities, seen while they watched


def watch_one(g: Gallery, url: str, server: subprocess.Popen, drivers: list[Any], size: int,
              iterations: int, images: tuple[str, str], owner: str) -> Watched:
    params = preset("draft", content=images[0], styles=(images[1],), size=size, iterations=iterations)
    cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
    run_id = g.submit(params, owner=owner)
    open_all(drivers, f"{url}/?run={run_id}&owner={owner}")
    seen = browser_policies() if drivers else ""
    wait_for(lambda: g.get(run_id).status not in ("queued", "running"), 3600, f"run {run_id}", interval=0.5)
    wall, cpu = time.monotonic() - t0, cpu_seconds(server.pid) - cpu0
    return Watched(len(drivers), Finished.of(g.get(run_id)).duration, cpu, wall, seen)


def cmd_watch(args: argparse.Namespace) -> list[str]:
    rounds: list[list[Watched]] = []
    with tempfile.TemporaryDirectory(prefix="bench-watchers-") as tmp:
        data = Path(tmp) / "data"
        with studio_process(data, data.parent / "server.log") as (url, server), Gallery(data) as g:
            images = add_images(g)
            # A first job loads the network and warms every cache, so the solo run is not the slowest.
            with browsers(1) as one:
                watch_one(g, url, server, one, 64, 5, images, "warmup")
            for _ in range(args.rounds):  # each round: alone, then watched, so drift hits all alike
                results = [watch_one(g, url, server, [], args.size, args.iterations, images, "solo")]
                for n in args.sessions:
                    with browsers(n) as drivers:
                        open_all(drivers, url)  # browsers up and the page loaded before the clock starts
                        results.append(watch_one(g, url, server, drivers, args.size, args.iterations, images,
                                                 f"watch{n}"))
                rounds.append(results)
    lines = [f"One draft job ({args.size} px, {args.iterations} iterations, tubingen + starry_night), "
             f"{os.cpu_count()} cores; browsers at nice {BROWSER_NICE} and SCHED_IDLE; {args.rounds} rounds, "
             "each alone then watched; medians, each ratio against its own round's solo run.", "",
             "| sessions watching | job (s) | × alone | per round | server CPU per session per minute (s) |",
             "| ---: | ---: | ---: | --- | ---: |"]
    for i, sessions in enumerate([0, *args.sessions]):
        runs = [r[i] for r in rounds]
        ratios = [r[i].duration / r[0].duration for r in rounds]
        # The job's own work is the same in every row; what the server did beyond it was watching.
        extra = [(r[i].server_cpu - r[0].server_cpu) / sessions / (r[i].wall / 60) for r in rounds] if sessions else []
        lines.append(f"| {sessions} | {statistics.median(r.duration for r in runs):.1f} | "
                     f"{statistics.median(ratios):.2f} | {', '.join(f'{x:.2f}' for x in ratios)} | "
                     + (f"{statistics.median(extra):.2f}" if extra else "—") + " |")
    lines.append("")
    lines += [f"Browser processes while {r.sessions} watched: {r.browsers}." for r in rounds[0] if r.sessions]
    return lines


def cmd_load(args: argparse.Namespace) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        data = Path(tmp) / "data"
        with studio_process(data, data.parent / "server.log") as (url, server), Gallery(data) as g:
            images = add_images(g)
            params = preset("draft", content=images[0], styles=(images[1],), size=args.size, iterations=args.iterations)

            def solo() -> float:
                run_id = g.submit(params, owner="solo")
                wait_for(lambda: g.get(run_id).status == "done", 600, f"solo run {run_id}")
                return Finished.of(g.get(run_id)).duration

            # The clicking session is someone at the machine: a browser at normal priority.
            with browsers(1, idle=False) as (clicker,), browsers(args.sessions) as watchers:
                open_all([clicker, *watchers], url)  # the first page load also starts the app's worker
                solo()  # warm-up
                solos = [solo() for _ in range(2)]
                answers: list[float] = []
                idle = threading.Event()
                clicking = threading.Thread(target=click_until, args=(clicker, idle, answers, args.click_every))
                clicking.start()
                t0 = time.monotonic()
                ids = []
                for i in range(len(watchers)):
                    ids += [g.submit(params.with_changes(seed=j), owner=f"user{i}") for j in range(args.jobs)]
                with ThreadPoolExecutor(len(watchers)) as pool:
                    list(pool.map(lambda i: watchers[i].get(f"{url}/?run={ids[(i + 1) * args.jobs - 1]}&owner=user{i}"),
                                  range(len(watchers))))
                wait_for(lambda: all(g.get(run_id).status not in ("queued", "running") for run_id in ids), 3600,
                           "every job", interval=0.5)
                wall = time.monotonic() - t0
                idle.set()
                clicking.join()
            runs = [g.get(run_id) for run_id in ids]
            claims = g.db.execute("SELECT COUNT(*) FROM runs WHERE owner LIKE 'user%' AND started IS NOT NULL").fetchone()[0]
    done = sum(r.status == "done" for r in runs)
    busy = sum(Finished.of(r).duration for r in runs if r.status == "done")
    expected = statistics.mean(solos) * len(runs)
    return [f"{args.sessions} sessions × {args.jobs} draft jobs ({args.size} px, {args.iterations} iterations), "
            f"{os.cpu_count()} cores; browsers at nice {BROWSER_NICE} and SCHED_IDLE.", "",
            "| figure | value |", "| --- | ---: |",
            f"| jobs done (each started once) | {done} of {len(runs)} ({claims} started) |",
            f"| one job alone (s) | {statistics.mean(solos):.1f} |",
            f"| sum of the jobs' solo times (s) | {expected:.0f} |",
            f"| wall, first submit to last done (s) | {wall:.0f} |",
            f"| wall / sum of solo times | {wall / expected:.2f} |",
            f"| sum of the jobs' own durations / solo sum | {busy / expected:.2f} |",
            f"| Create page clicks answered (one every {args.click_every:g} s) | {len(answers)} |",
            "| answer, median / slowest (s) | "
            + (f"{statistics.median(answers):.2f} / {max(answers):.2f} |" if answers else "— |")]


def click_until(driver: Any, stop: threading.Event, answers: list[float], every: float) -> None:
    """Clicks the Create page's presets in turn, `every` seconds apart, until `stop`; appends the
    seconds each click took to be answered (the script run it started has ended)."""
    wait_for(lambda: driver.find_elements("css selector", PRESET_BUTTONS), 60, "the presets")
    while not stop.is_set():
        wait_for(lambda: script_idle(driver), 60, "the page to settle")
        buttons = driver.find_elements("css selector", PRESET_BUTTONS)
        t0 = time.monotonic()
        buttons[len(answers) % 2].click()
        time.sleep(0.05)  # the status widget shows once the rerun request is out
        wait_for(lambda: script_idle(driver), 60, "the click's answer", interval=0.02)
        answers.append(time.monotonic() - t0)
        stop.wait(every)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.watchers", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", choices=("watch", "load"), default="watch")
    parser.add_argument("--sessions", type=int, nargs="+")
    parser.add_argument("--jobs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3, help="watch: rounds of alone, then watched")
    parser.add_argument("--click-every", type=float, default=5.0, help="load: seconds between clicks")
    parser.add_argument("--size", type=int)
    parser.add_argument("--iterations", type=int)
    args = parser.parse_args(argv)
    if args.command == "watch":
        args.sessions = args.sessions or [4, 8]
        args.size, args.iterations = args.size or 256, args.iterations or 100
        lines = cmd_watch(args)
    else:
        args.sessions = (args.sessions or [8])[0]
        args.size, args.iterations = args.size or 128, args.iterations or 100
        lines = cmd_load(args)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
