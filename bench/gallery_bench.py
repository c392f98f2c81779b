"""How fast the gallery answers the UI's queries with 10,000 runs.

    python -m bench.gallery_bench [--runs N] [--repeat K]

Fills a temporary gallery in one transaction (fake params, no images: only the index is
measured) and prints the median time of the queries the Gallery page makes: a page of 50 runs
filtered by style, a text search, and their counts. Target: each under 50 ms.
"""
from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable

from engine.params import Params
from gallery import Gallery, Run, RunFilter

TARGET_MS = 50.0
WORDS = ("sunset", "harbour", "portrait", "forest", "night", "city", "river", "winter", "garden", "storm",
         "mountain", "bridge", "market", "cathedral", "meadow", "lighthouse", "desert", "village")
STYLES = [f"{painter}_{i}.jpg" for painter in ("starry_night", "the_scream", "picasso", "matisse", "hokusai",
                                               "klimt", "monet", "kandinsky") for i in range(3)]
CONTENTS = [f"photo_{i:03d}.jpg" for i in range(60)]


def fill(g: Gallery, n: int, rng: random.Random) -> None:
    with g._write():
        for i in range(n):
            styles = rng.sample(STYLES, rng.choice((1, 1, 1, 2)))
            params = Params(content=f"inputs/{i}.jpg", styles=tuple(f"inputs/s{s}.jpg" for s in styles),
                            size=rng.choice((256, 512, 768, 1024)), iterations=rng.choice((100, 300, 500)),
                            optimizer=rng.choice(("lbfgs", "adam")), seed=i, style_weight=rng.choice((1e3, 1e4, 1e5)))
            g._insert_run(params, content_name=rng.choice(CONTENTS), content_sha256=None,
                          styles=[(None, s) for s in styles], owner=f"user{rng.randrange(20)}",
                          title=" ".join(rng.sample(WORDS, 2)), tags=", ".join(rng.sample(WORDS, 2)),
                          status=rng.choice(("done",) * 8 + ("failed", "cancelled")),
                          favorite=int(rng.random() < 0.1), duration=rng.uniform(5, 600))


def median_ms(query: Callable[[], object], repeat: int) -> float:
    query()  # warm the page cache
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        query()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gallery_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args(argv)
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as folder, Gallery(folder) as g:
        start = time.perf_counter()
        fill(g, args.runs, rng)
        print(f"filled {args.runs} runs in {time.perf_counter() - start:.1f}s")
        style = STYLES[4]
        queries: dict[str, Callable[[], list[Run] | int]] = {
            "page of 50, style filter": lambda: g.list_runs(RunFilter(status="done", style=style), limit=50),
            "count, style filter": lambda: g.count_runs(RunFilter(status="done", style=style)),
            "page 5 of 50, style filter": lambda: g.list_runs(RunFilter(status="done", style=style), limit=50, offset=200),
            "page of 50, text search": lambda: g.list_runs(RunFilter(search="harbour night"), limit=50),
            "count, text search": lambda: g.count_runs(RunFilter(search="harbour night")),
            "page of 50, search + style + favourites": lambda: g.list_runs(
                RunFilter(search="storm", style=style, favorite=True), limit=50),
            "page of 50, newest, no filter": lambda: g.list_runs(limit=50),
        }
        worst = 0.0
        for name, query in queries.items():
            ms = median_ms(query, args.repeat)
            worst = max(worst, ms)
            found = query()
            rows = found if isinstance(found, int) else len(found)
            print(f"{name:42} {ms:7.2f} ms  ({rows} rows)")
        verdict = "OK" if worst < TARGET_MS else "SLOW"
        print(f"worst median {worst:.2f} ms; target {TARGET_MS:.0f} ms: {verdict}")
    return 0 if worst < TARGET_MS else 1


if __name__ == "__main__":
    raise SystemExit(main())
