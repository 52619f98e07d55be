"""The data engine's `dojo` subcommands: ingest, query, mine, datasets (thin over the library)."""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import sys
from dataclasses import fields
from typing import Any

from dojo.cluster import add_ray_flag
from dojo.errors import DojoConfigError

MAX_CELL = 40  # characters of a value shown in a table cell


def _cell(value: Any) -> Any:
    """A JSON-able form of a DuckDB value (bytes as their length, times as ISO text)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value)} bytes>"
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_cell(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _cell(v) for k, v in value.items()}
    return value


def format_rows(columns: list[str], rows: list[tuple[Any, ...]], limit: int = 50) -> str:
    """A plain-text table of at most ``limit`` rows, with the total row count."""
    shown = [[_short(_cell(v)) for v in row] for row in rows[:limit]]
    widths = [max([len(c)] + [len(r[i]) for r in shown]) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    for r in shown:
        out.append(
            "  ".join(
                v.rjust(w) if _numeric(v) else v.ljust(w) for v, w in zip(r, widths, strict=True)
            )
        )
    more = f" (first {limit} shown; --limit to change)" if len(rows) > limit else ""
    out.append(f"({len(rows):,} row{'s' if len(rows) != 1 else ''}{more})")
    return "\n".join(out)


def _short(value: Any) -> str:
    text = "NULL" if value is None else (f"{value:.6g}" if isinstance(value, float) else str(value))
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def _numeric(text: str) -> bool:
    try:
        float(text.replace(",", ""))
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------------- handlers
def _ingest(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from dojo.cluster import resolve_address
    from dojo.data.ingest import FileResult, find_logs, ingest

    files, _ = find_logs(args.paths)  # checks the paths before the bar starts
    with tqdm(total=len(files), desc="ingest", unit="file", disable=args.json, leave=False) as bar:
        frames = 0

        def tick(r: FileResult) -> None:
            nonlocal frames
            frames += r.frames
            bar.update(1)
            bar.set_postfix(frames=frames, refresh=False)

        summary = ingest(
            args.paths,
            args.store,
            workers=args.workers,
            progress=tick,
            ray=resolve_address(args.ray),
        )
    out = summary.as_dict()
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(
            f"{out['files_ingested']} ingested, {out['files_already']} already in the store, "
            f"{out['files_quarantined']} quarantined, {out['files_skipped']} skipped: "
            f"{out['clips']:,} clips, {out['frames']:,} camera frames in {out['wall_s']:.1f} s "
            f"({out['camera_frames_per_s']:,.0f} frames/s, {out['workers']} workers) -> {out['store']}"
        )
        for item in out["quarantined"]:
            print(f"  quarantined {item['file']}: {item['reason']}")
        for item in out["skipped"]:
            print(f"  skipped {item['file']}: {item['reason']}")
    return 0 if not out["files_quarantined"] and not out["files_skipped"] else 1


def _query(args: argparse.Namespace) -> int:
    from dojo.data.catalog import query

    columns, rows = query(args.store, args.sql)
    if args.json:
        print(json.dumps([dict(zip(columns, map(_cell, r), strict=True)) for r in rows], indent=1))
    elif args.csv:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(columns)
        writer.writerows([[_cell(v) for v in r] for r in rows])
        sys.stdout.write(buf.getvalue())
    else:
        print(format_rows(columns, rows, args.limit))
    return 0


def _mine(args: argparse.Namespace) -> int:
    import shlex

    from dojo.data.datasets import format_saved
    from dojo.data.mine import mine, parse_window
    from dojo.data.triggers import list_triggers, parse_params

    if args.list_triggers:
        for t in list_triggers(args.triggers_file):
            params = ", ".join(f"{k}={v!r}" for k, v in t.params.items())
            print(
                f"{t.name:<26}{'' if t.builtin else '(user) '}{t.description}{f'  [{params}]' if params else ''}"
            )
        return 0
    if not args.trigger or not args.out:
        raise DojoConfigError(
            "dojo mine needs --trigger NAME[,NAME] and --out DATASET (or --list-triggers)."
        )
    version = mine(
        args.store,
        args.trigger,
        parse_window(args.window),
        args.sample_normal,
        args.seed,
        out=args.out,
        val_share=args.val_share,
        params=parse_params(args.param),
        user_triggers_file=args.triggers_file,
        command=" ".join(["dojo", "mine", *map(shlex.quote, sys.argv[2:])])
        if sys.argv[1:2] == ["mine"]
        else None,
    )
    if args.json:
        print(
            json.dumps(
                {
                    "dataset": version.ref,
                    "created": version.created,
                    "windows": version.entries,
                    "frames": version.frames,
                    "hours": version.hours,
                    "drives": version.drives,
                    "moments": version.moments,
                    "dropped_no_video": version.dropped_no_video,
                    "content_hash": version.content_hash,
                    "path": version.path,
                },
                indent=2,
            )
        )
    else:
        print(format_saved(version))
    return 0


def _datasets(args: argparse.Namespace) -> int:
    from dojo.data import datasets as ds

    if args.datasets_command == "list":
        print(ds.format_list(args.store))
    elif args.datasets_command == "show":
        print(ds.format_show(args.store, args.ref), end="")
    else:
        print(ds.format_diff(args.store, args.a, args.b))
    return 0


def _autolabel(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from dojo.cluster import resolve_address
    from dojo.data.autolabel import AutolabelConfig, autolabel
    from dojo.data.autolabel.visibility import scene_visibility
    from dojo.data.store import Store
    from dojo.settings import from_args

    config = from_args(AutolabelConfig, args)
    store = Store(args.store)
    with tqdm(
        total=len(store.drive_ids()), desc="autolabel", unit="drive", disable=args.json, leave=False
    ) as bar:
        summary = autolabel(
            store,
            scene_visibility,
            args.dataset,
            config,
            progress=lambda _: bar.update(1),
            workers=args.workers,
            ray=resolve_address(args.ray),
        )
    out = summary.as_dict()
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(
            f"{out['drives_labelled']} drives labelled, {out['drives_already']} already at "
            f"version {out['version']}, {len(out['drives_refused'])} refused: "
            f"{out['frames_labelled']:,} of {out['frames']:,} frames labelled "
            f"({out['frames_network_driven_labelled']:,} of {out['frames_network_driven']:,} "
            f"the network drove), {out['grids']:,} grids in {out['wall_s']:.1f} s"
        )
        for item in out["drives_partial"]:
            print(f"  partly labelled {item['drive_id']}: {item['reason']}")
        for item in out["drives_refused"]:
            print(f"  refused {item['drive_id']}: {item['reason']}")
    return 1 if out["drives_refused"] else 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``ingest``, ``query``, ``mine`` and ``datasets`` on the top-level ``dojo`` parser."""
    ing = sub.add_parser(
        "ingest",
        help="read MCAP drive logs into the clip store (atomic, idempotent, resumable, parallel)",
        description="Read MCAP drive logs (files or folders) into a clip store. A bad file is "
        "quarantined with its reason and the rest go on. Exit code 1 if any file was "
        "quarantined or skipped.",
    )
    ing.add_argument("paths", nargs="+", help="drive logs (.mcap) or folders of them")
    ing.add_argument(
        "--store", required=True, help="clip store folder or fsspec URL (created if new)"
    )
    ing.add_argument("--workers", type=int, default=None, help="processes (default: one per core)")
    add_ray_flag(ing)
    ing.add_argument("--json", action="store_true", help="print the summary as JSON")
    ing.set_defaults(func=_ingest)

    q = sub.add_parser(
        "query",
        help="SQL over the catalog (DuckDB views: drives, clips, frames, telemetry, poses, events, labels)",
    )
    q.add_argument("store", help="clip store folder or fsspec URL")
    q.add_argument(
        "sql", help='one SQL statement, e.g. "SELECT family, count(*) FROM clips GROUP BY 1"'
    )
    fmt = q.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="rows as a JSON list of objects")
    fmt.add_argument("--csv", action="store_true", help="rows as CSV with a header")
    q.add_argument("--limit", type=int, default=50, help="rows shown in the table (default 50)")
    q.set_defaults(func=_query)

    m = sub.add_parser(
        "mine",
        help="mine triggers (SQL over the catalog) into a new dataset version",
        description="Find the moments of named triggers, cut windows around them out of the "
        "clips, add a sampled share of normal driving, split by drive and save an immutable "
        "dataset version with a Markdown card. Mining the same windows again changes nothing.",
    )
    m.add_argument("store", help="clip store folder or fsspec URL")
    m.add_argument("--trigger", help="trigger names, comma-separated (see --list-triggers)")
    m.add_argument(
        "--window", default="-5s:+2s", help="seconds before:after each moment (default -5s:+2s)"
    )
    m.add_argument(
        "--sample-normal",
        type=float,
        default=0.1,
        help="share of untriggered video slots kept as normal driving (default 0.1)",
    )
    m.add_argument("--out", help="dataset name; a new version if it exists")
    m.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="TRIGGER.NAME=VALUE",
        help="a trigger parameter, e.g. near_miss.ttc_s=1.0 (repeatable)",
    )
    m.add_argument("--triggers-file", help="TOML file of user triggers ([triggers.NAME] sql = ...)")
    m.add_argument("--seed", type=int, default=0, help="seed of the normal sample and the split")
    m.add_argument(
        "--val-share", type=float, default=0.2, help="share of drives held out for validation"
    )
    m.add_argument(
        "--list-triggers", action="store_true", help="list the triggers and their parameters"
    )
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=_mine)

    from dojo.data.autolabel import AutolabelConfig
    from dojo.settings import add_flags

    a = sub.add_parser(
        "autolabel",
        help="offline auto-labeling: hindsight labels for every logged frame, from the scene",
        description="Label every ingested drive (or a dataset's drives) with the careful "
        "driver's action under the rig's visibility rule, the lead vehicle's gap, closing "
        "speed and TTC, the gaps in the next lanes, and occupancy grids with per-cell velocity. "
        "Deterministic and versioned: drives already labelled at this version are left as "
        "they are. Exit code 1 if a drive was refused.",
    )
    a.add_argument("store", help="clip store folder or fsspec URL")
    a.add_argument("--dataset", help="label only this dataset's drives (NAME, NAME@vN)")
    a.add_argument("--workers", type=int, default=None, help="processes (default: one per core)")
    add_ray_flag(a)
    add_flags(a, AutolabelConfig, [f.name for f in fields(AutolabelConfig)])
    a.add_argument("--json", action="store_true", help="print the summary as JSON")
    a.set_defaults(func=_autolabel)

    d = sub.add_parser("datasets", help="versioned datasets: list, show (the card), diff")
    dsub = d.add_subparsers(dest="datasets_command", required=True)
    dl = dsub.add_parser("list", help="every dataset version in a store")
    dl.add_argument("store")
    dl.set_defaults(func=_datasets)
    dsh = dsub.add_parser("show", help="a version's card (NAME, NAME@latest or NAME@vN)")
    dsh.add_argument("store")
    dsh.add_argument("ref")
    dsh.set_defaults(func=_datasets)
    dd = dsub.add_parser("diff", help="windows added, removed and changed between two versions")
    dd.add_argument("store")
    dd.add_argument("a")
    dd.add_argument("b")
    dd.set_defaults(func=_datasets)


__all__ = ["add_commands", "format_rows"]
