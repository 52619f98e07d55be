"""`dojo bench data`: the data engine's four targets, each beside its reference, in one run.

- ``ingest``: camera frames ingested per second (2 workers) beside the official ``mcap``
  reader iterating the same files (:mod:`dojo.bench.ingest`).
- ``loader``: decoded training windows from the streaming loader beside plain PyAV decoding
  the same clips (:mod:`dojo.data.loader`).
- ``query``: a near-miss trigger over 10^8 telemetry rows, DuckDB beside pandas
  (:mod:`dojo.bench.query`).
- ``autolabel``: frames auto-labelled per second beside reading the labeler's inputs
  (:mod:`dojo.bench.autolabel`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from dojo.errors import DojoConfigError

PARTS = ("ingest", "loader", "query", "autolabel")


def bench_data(
    parts: Sequence[str] = PARTS,
    rows: int = 10**8,
    cars: int = 8,
    seconds: float = 120.0,
    repeats: int = 3,
    log: Callable[[str], None] | None = None,
    ray: str | None = None,
) -> dict[str, Any]:
    """Run the chosen parts; a JSON-able dict keyed by part. ``ray``: ingest on Ray too."""
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise DojoConfigError(f"parts={list(parts)!r} must be some of {', '.join(PARTS)}.")
    out: dict[str, Any] = {}
    if "ingest" in parts:
        from dojo.bench.ingest import bench_ingest

        out["ingest"] = bench_ingest(cars=cars, seconds=seconds, repeats=repeats, log=log, ray=ray)
    if "loader" in parts:
        from dojo.bench.loader import bench_loader

        out["loader"] = bench_loader(cars=cars, seconds=seconds, repeats=repeats, log=log)
    if "query" in parts:
        from dojo.bench.query import bench_trigger_query

        out["query"] = bench_trigger_query(rows=rows, repeats=repeats, log=log)
    if "autolabel" in parts:
        from dojo.bench.autolabel import bench_autolabel

        out["autolabel"] = bench_autolabel(cars=cars, seconds=seconds, repeats=repeats, log=log)
    return out


def format_result(result: dict[str, Any]) -> str:
    blocks = []
    if "ingest" in result:
        from dojo.bench.ingest import format_ingest

        blocks.append(format_ingest(result["ingest"]))
    if "loader" in result:
        from dojo.bench.loader import format_loader

        blocks.append(format_loader(result["loader"]))
    if "query" in result:
        from dojo.bench.query import format_table

        blocks.append(format_table(result["query"]))
    if "autolabel" in result:
        from dojo.bench.autolabel import format_autolabel

        blocks.append(format_autolabel(result["autolabel"]))
    return "\n\n".join(blocks)


__all__ = ["PARTS", "bench_data", "format_result"]
