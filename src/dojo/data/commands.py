"""The data engine's `dojo` subcommands: ingest, query, mine, datasets (thin over the library)."""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import sys
from typing import Any

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
        out.append("  ".join(v.rjust(w) if _numeric(v) else v.ljust(w) for v, w in zip(r, widths, strict=True)))
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

    from dojo.data.ingest import FileResult, find_logs, ingest

    files, _ = find_logs(args.paths)  # checks the paths before the bar starts
    with tqdm(total=len(files), desc="ingest", unit="file", disable=args.json, leave=False) as bar:
        frames = 0

        def tick(r: FileResult) -> None:
            nonlocal frames
            frames += r.frames
            bar.update(1)
            bar.set_postfix(frames=frames, refresh=False)

        summary = ingest(args.paths, args.store, workers=args.workers, progress=tick)
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


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``ingest`` and ``query`` on the top-level ``dojo`` parser."""
    ing = sub.add_parser(
        "ingest",
        help="read MCAP drive logs into the clip store (atomic, idempotent, resumable, parallel)",
        description="Read MCAP drive logs (files or folders) into a clip store. A bad file is "
        "quarantined with its reason and the rest go on. Exit code 1 if any file was "
        "quarantined or skipped.",
    )
    ing.add_argument("paths", nargs="+", help="drive logs (.mcap) or folders of them")
    ing.add_argument("--store", required=True, help="clip store folder or fsspec URL (created if new)")
    ing.add_argument("--workers", type=int, default=None, help="processes (default: one per core)")
    ing.add_argument("--json", action="store_true", help="print the summary as JSON")
    ing.set_defaults(func=_ingest)

    q = sub.add_parser(
        "query",
        help="SQL over the catalog (DuckDB views: drives, clips, frames, telemetry, poses, events, labels)",
    )
    q.add_argument("store", help="clip store folder or fsspec URL")
    q.add_argument("sql", help='one SQL statement, e.g. "SELECT family, count(*) FROM clips GROUP BY 1"')
    fmt = q.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="rows as a JSON list of objects")
    fmt.add_argument("--csv", action="store_true", help="rows as CSV with a header")
    q.add_argument("--limit", type=int, default=50, help="rows shown in the table (default 50)")
    q.set_defaults(func=_query)


__all__ = ["add_commands", "format_rows"]
