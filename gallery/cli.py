"""`python -m gallery`: the gallery from a terminal, a thin layer over the Python API.

    python -m gallery [--data DIR] submit CONTENT STYLE... [engine flags]   (prints the new id)
    python -m gallery list [--status S] [--style NAME] [--favorite] [--search TEXT] [--json] [--limit N]
    python -m gallery show ID | export ID DEST(.png|.webp|.gif) | export ID --progress OUT.webp
    python -m gallery export --all DEST | import ZIP | rm ID... | requeue ID
    python -m gallery cancel ID

Processing the queue is the worker's job: `python -m worker work`, or `python -m worker run`.

Bad input exits with status 2 and one line on stderr.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from engine.cli_args import OneLineParser, add_param_arguments, params_from_args
from engine.images import ImageError
from engine.params import ParamsError
from gallery.db import STATUSES
from gallery.errors import GalleryError
from gallery.exchange import export_zip, import_zip
from gallery.models import Run
from gallery.paths import DATA_ENV, as_run_id
from gallery.queries import RunFilter
from gallery.store import Gallery

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input from the command line: exit 2 with the message."""


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m gallery", description="The style-transfer studio's gallery and queue.")
    parser.add_argument("--data", metavar="DIR", help=f"data folder (default: ${DATA_ENV}, else ./data)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    submit = commands.add_parser("submit", help="queue a run for a worker; prints its id")
    add_run_arguments(submit)

    ls = commands.add_parser("list", help="list runs, newest first")
    ls.add_argument("--status", choices=STATUSES)
    ls.add_argument("--style", metavar="NAME", help="runs using this style image (name or sha256)")
    ls.add_argument("--favorite", action="store_true", help="favourites only")
    ls.add_argument("--search", metavar="TEXT", help="words in title, tags, content or style names")
    ls.add_argument("--owner")
    ls.add_argument("--json", action="store_true", help="one JSON array with every field")
    ls.add_argument("--limit", type=int, default=50, metavar="N")

    show = commands.add_parser("show", help="a run's parameters and files")
    show.add_argument("id", metavar="ID")

    export = commands.add_parser("export", help="one run as a PNG (params embedded), a clip's animation "
                                 "(DEST .webp or .gif), or several runs as a zip")
    export.add_argument("--all", action="store_true", help="every finished run, as a zip")
    export.add_argument("items", nargs="+", metavar="ID|DEST", help="ID... DEST, or DEST with --all")
    export.add_argument("--progress", metavar="WEBP", help="also write ID's optimisation as an animated WebP "
                        "(saved iterations in order, the result held at the end)")

    imp = commands.add_parser("import", help="add the runs of an exported zip")
    imp.add_argument("zip", metavar="ZIP")
    imp.add_argument("--owner", default="", help="who the imported runs belong to (the zip's owners are not taken)")
    imp.add_argument("--keep-weights", action="store_true",
                     help="keep a weights file path named by the runs' settings (else: the built-in weights)")

    rm = commands.add_parser("rm", help="delete runs and their files")
    rm.add_argument("ids", nargs="+", metavar="ID")

    requeue = commands.add_parser("requeue", help="queue an interrupted, failed or cancelled run again")
    requeue.add_argument("id", metavar="ID")

    cancel = commands.add_parser("cancel", help="cancel a queued or running run")
    cancel.add_argument("id", metavar="ID")

    return parser


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The images, labels and engine flags of a new run."""
    parser.add_argument("content", metavar="CONTENT", help="content image")
    parser.add_argument("styles", metavar="STYLE", nargs="+", help="style image(s)")
    parser.add_argument("--title", default="", help="a title for the gallery")
    parser.add_argument("--tags", default="", help="comma-separated tags")
    parser.add_argument("--owner", default="", help="who ran it")
    add_param_arguments(parser)


def submit_from_args(gallery: Gallery, args: argparse.Namespace) -> int:
    """Queues the run that add_run_arguments' flags describe; returns its id."""
    for path in [args.content, *args.styles, *([args.init_image] if getattr(args, "init_image", "") else [])]:
        if not Path(path).is_file():
            raise UsageError(f"no such file: {path}")
    params = params_from_args(args, args.content, args.styles)
    return gallery.submit(params, owner=args.owner, title=args.title, tags=args.tags)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        gallery = Gallery(args.data)
        with gallery:
            return COMMANDS[args.command](gallery, args)
    except (UsageError, GalleryError, ParamsError, ImageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Output piped into `head` and the like: stop quietly, and keep Python from complaining
        # again when it flushes stdout on exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


# ---- commands ---------------------------------------------------------------------------------

def cmd_submit(gallery: Gallery, args: argparse.Namespace) -> int:
    # The id alone on stdout, so scripts can take it: `id=$(python -m gallery submit ...)`.
    print(submit_from_args(gallery, args))
    return 0


def cmd_list(gallery: Gallery, args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    where = RunFilter(status=args.status, style=args.style, favorite=True if args.favorite else None,
                      search=args.search, owner=args.owner)
    runs = gallery.list_runs(where, limit=args.limit)
    if args.json:
        print(json.dumps([r.to_dict() for r in runs], indent=2))
        return 0
    rows = [("ID", "STATUS", "CREATED", "SIZE", "ITERS", "CONTENT", "STYLES", "TITLE")]
    rows += [(str(r.id), r.status + (" *" if r.favorite else ""), r.created.astimezone().strftime("%Y-%m-%d %H:%M"),
              str(r.params.size), f"{r.iteration}/{r.total}", r.content_name, ", ".join(r.style_names), r.title)
             for r in runs]
    widths = [min(40, max(len(row[i]) for row in rows)) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell[:w].ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


def cmd_show(gallery: Gallery, args: argparse.Namespace) -> int:
    run = gallery.get(as_run_id(args.id))
    fields = [
        ("id", run.id), ("status", run.status), ("title", run.title), ("tags", run.tags),
        ("owner", run.owner), ("favorite", "yes" if run.favorite else "no"),
        ("content", run.content_name), ("styles", ", ".join(run.style_names)),
        ("created", run.created.isoformat()), ("started", run.started and run.started.isoformat()),
        ("finished", run.finished and run.finished.isoformat()),
        ("duration", f"{run.duration:.1f}s" if run.duration is not None else None),
        ("progress", f"{run.iteration}/{run.total}"), ("device", run.device), ("ran on", run.ran_on or "—"),
        ("weights", run.weights_name), ("losses", json.dumps(run.losses) if run.losses else None),
        ("error", run.error), ("requeued from", run.requeued_from), ("grown from", run.grown_from),
        ("prints", ", ".join(str(r.id) for r in gallery.prints_of(run.id))),
        ("result", run.result_path), ("thumbnail", run.thumb_path),
        ("frames", run.frames if run.is_clip else None), ("animation", run.animation_path), ("gif", run.gif_path),
    ]
    for name, value in fields:
        if value not in (None, ""):
            print(f"{name + ':':15}{value}")
    for iteration, path in gallery.previews(run.id):
        print(f"{'preview:':15}{path} (iteration {iteration})")
    print("params:")
    print(json.dumps(run.params.to_dict(), indent=2))
    return 0


def cmd_export(gallery: Gallery, args: argparse.Namespace) -> int:
    if args.progress:
        return _export_progress(gallery, args.items, Path(args.progress))
    *ids, dest = args.items
    if args.all:
        if ids:
            raise UsageError("give either IDs or --all, not both")
        ids = [r.id for r in _all_done(gallery)]
        if not ids:
            raise UsageError("there are no finished runs to export")
    elif not ids:
        raise UsageError("give the ID of the run to export and where to write it")
    ids = [as_run_id(i) for i in ids]
    dest_path = Path(dest)
    as_zip = args.all or len(ids) > 1 or dest_path.suffix.lower() == ".zip"
    if dest_path.is_dir():
        dest_path = dest_path / ("gallery-export.zip" if as_zip else f"run-{ids[0]}.png")
    if not dest_path.parent.is_dir():
        raise UsageError(f"no such folder: {dest_path.parent}")
    if as_zip:
        count = export_zip(gallery, ids, dest_path)
        print(f"wrote {count} run{'s' * (count != 1)} to {dest_path}")
    else:
        from gallery.files import write_atomic
        write_atomic(dest_path, _one_export(gallery, ids[0], dest_path.suffix.lower()))
        print(f"wrote {dest_path}")
    return 0


def _one_export(gallery: Gallery, run_id: int, suffix: str) -> bytes:
    """A run's PNG; for a .webp or .gif destination, a finished clip's animation."""
    if suffix not in (".webp", ".gif"):
        return gallery.export_png(run_id)
    run = gallery.get(run_id)
    path = run.animation_path if suffix == ".webp" else run.gif_path
    if path is None:
        raise UsageError(f"run {run_id} is not a finished clip, so it has no animation; export it as a .png "
                         "(or its optimisation with --progress)")
    return path.read_bytes()


def _export_progress(gallery: Gallery, items: list[str], dest: Path) -> int:
    from gallery.files import write_atomic
    from gallery.timelapse import timelapse_webp

    if len(items) != 1:
        raise UsageError("give one run ID with --progress: export ID --progress out.webp")
    if not dest.parent.is_dir():
        raise UsageError(f"no such folder: {dest.parent}")
    write_atomic(dest, timelapse_webp(gallery, as_run_id(items[0])))
    print(f"wrote {dest}")
    return 0


def _all_done(gallery: Gallery) -> list[Run]:
    runs: list[Run] = []
    page = 1000
    while True:
        batch = gallery.list_runs(RunFilter(status="done"), sort="oldest", limit=page, offset=len(runs))
        runs += batch
        if len(batch) < page:
            return runs


def cmd_import(gallery: Gallery, args: argparse.Namespace) -> int:
    if not Path(args.zip).is_file():
        raise UsageError(f"no such file: {args.zip}")
    ids = import_zip(gallery, args.zip, owner=args.owner, keep_weights=args.keep_weights)
    print(f"imported {len(ids)} run{'s' * (len(ids) != 1)}" + (f": {', '.join(map(str, ids))}" if ids else ""))
    return 0


def cmd_rm(gallery: Gallery, args: argparse.Namespace) -> int:
    ids = [as_run_id(i) for i in args.ids]
    for run_id in ids:
        gallery.get(run_id)  # all must exist before any goes
    for run_id in ids:
        gallery.delete(run_id)
        print(f"deleted run {run_id}")
    return 0


def cmd_requeue(gallery: Gallery, args: argparse.Namespace) -> int:
    new = gallery.requeue(as_run_id(args.id))
    print(f"run {new} queued (again from run {as_run_id(args.id)}); a running worker (the web app or "
          f"`python -m worker work`) will start it")
    return 0


def cmd_cancel(gallery: Gallery, args: argparse.Namespace) -> int:
    run_id = as_run_id(args.id)
    status = gallery.request_cancel(run_id)
    print(f"run {run_id} cancelled" if status == "cancelled" else
          f"run {run_id} will stop at its next iteration" if status == "running" else
          f"run {run_id} is {status} already")
    return 0


COMMANDS = {
    "submit": cmd_submit, "list": cmd_list, "show": cmd_show, "export": cmd_export, "import": cmd_import,
    "rm": cmd_rm, "requeue": cmd_requeue, "cancel": cmd_cancel,
}
