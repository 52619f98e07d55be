"""`dojo bench data` (trigger query): a mining question over 10^8 telemetry rows, DuckDB beside pandas.

The target: a trigger query over 10^8 telemetry rows (one car's four months at 10 Hz) answers
in under :data:`TARGET_S` seconds. The rule for every performance target holds here too: the
reference (pandas) answers the same question in the same run, and the ratio is printed.

**The question** (a real mining trigger): *near misses*. Rows whose time-to-collision is under
:data:`NEAR_MISS_TTC_S` are grouped into events per drive: a row starts a new event when more
than :data:`EVENT_GAP_S` passed since the drive's previous near-miss row. The answer is, per
drive with any near miss, the number of events, the smallest TTC and the number of near-miss
rows; and the total of events. Gaps are compared with a tolerance of :data:`_GAP_TOLERANCE_S`
because 10 Hz times are not exact in binary (``10.1 - 9.1`` is not ``1.0``): a gap of exactly
one second is the same event, whatever the rounding.

**Both sides start from files on disk.** DuckDB: a new :func:`dojo.data.catalog.connect` per
timed run (the catalog's views over the store's Parquet files), one SQL statement. pandas:
``pd.read_parquet`` of the same files (only the three columns the question needs, as anyone
would) and the same computation in pandas idioms. Reading is inside both timings. The OS page
cache is whatever the generation left (warm when the data fits in memory), the same for both.

**The data** is synthetic telemetry, cached (:mod:`dojo.bench.query_data`).

When pandas cannot hold all rows in memory it runs on the first drives only, and DuckDB is timed
on exactly those drives too (a second store of hard links), so the speed-up compares like with
like; DuckDB on all rows is what is held against the target.
"""

from __future__ import annotations

import math
import os
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from dojo.bench.machine import cpu_model
from dojo.bench.query_data import (
    NEAR_MISS_TTC_S,
    ROWS_PER_DRIVE,
    _check_count,
    make_telemetry,
    subset_store,
)
from dojo.data.catalog import connect
from dojo.data.store import (
    TABLE_FILES,
)
from dojo.errors import DojoConfigError
from dojo.validate import whole

TARGET_S = 2.0  # the target for DuckDB over all rows [s]
EVENT_GAP_S = 1.0  # a near-miss row more than this after the previous one starts a new event [s]
_GAP_TOLERANCE_S = 1e-6  # absorbs binary rounding of 10 Hz times, far below one step [s]
# Peak memory of the pandas side per telemetry row (three columns read, the string drive id,
# pyarrow's buffers during conversion, the concatenation copy) [bytes], measured on 10^7 rows
# with some margin; used to choose how many rows pandas can be given.
PANDAS_BYTES_PER_ROW = 120
PANDAS_MEMORY_SHARE = 0.6  # share of MemAvailable the pandas side may plan to use


TRIGGER_SQL = """
WITH near AS (
    SELECT drive_id, t_s, ttc_s,
           t_s - lag(t_s) OVER (PARTITION BY drive_id ORDER BY t_s) AS since_previous_s
    FROM telemetry
    WHERE ttc_s < $threshold_s
)
SELECT drive_id,
       count(*) FILTER (WHERE since_previous_s IS NULL OR since_previous_s > $gap_s) AS events,
       min(ttc_s) AS min_ttc_s,
       count(*) AS near_miss_rows
FROM near
GROUP BY drive_id
ORDER BY drive_id
"""


# ------------------------------------------------------------------------------- the answer
@dataclass(frozen=True)
class DriveNearMisses:
    """One drive's near misses: events, smallest TTC [s], near-miss rows."""

    drive_id: str
    events: int
    min_ttc_s: float
    near_miss_rows: int


def total_events(answer: Sequence[DriveNearMisses]) -> int:
    """All near-miss events of all drives."""
    return sum(d.events for d in answer)


def near_misses_duckdb(
    store: str | os.PathLike[str],
    threshold_s: float = NEAR_MISS_TTC_S,
    gap_s: float = EVENT_GAP_S,
    threads: int | None = None,
) -> list[DriveNearMisses]:
    """The near-miss question in SQL through the catalog (a new connection: nothing cached)."""
    con = connect(store, threads=threads)
    try:
        rows = con.execute(
            TRIGGER_SQL,
            {"threshold_s": float(threshold_s), "gap_s": float(gap_s) + _GAP_TOLERANCE_S},
        ).fetchall()
    finally:
        con.close()
    return [DriveNearMisses(str(d), int(e), float(m), int(n)) for d, e, m, n in rows]


def telemetry_files(store: str | os.PathLike[str]) -> list[Path]:
    """The store's telemetry Parquet files, as the catalog's view globs them."""
    return sorted(Path(store).glob(f"drives/*/{TABLE_FILES['telemetry']}"))


def near_misses_pandas(
    store: str | os.PathLike[str],
    threshold_s: float = NEAR_MISS_TTC_S,
    gap_s: float = EVENT_GAP_S,
) -> list[DriveNearMisses]:
    """The same question as a pandas user writes it: read the files, filter, sort, diff, group."""
    import pandas as pd  # a benchmark-only dependency

    columns = ["drive_id", "t_s", "ttc_s"]
    parts = [pd.read_parquet(f, columns=columns) for f in telemetry_files(store)]
    if not parts:
        return []
    df = pd.concat(parts, ignore_index=True)
    del parts
    near = df[df["ttc_s"] < threshold_s].sort_values(["drive_id", "t_s"])
    del df
    since_previous_s = near.groupby("drive_id", sort=False)["t_s"].diff()
    near = near.assign(
        new_event=since_previous_s.isna() | (since_previous_s > gap_s + _GAP_TOLERANCE_S)
    )
    per = near.groupby("drive_id", sort=True).agg(
        events=("new_event", "sum"), min_ttc_s=("ttc_s", "min"), near_miss_rows=("ttc_s", "size")
    )
    return [
        DriveNearMisses(str(d), int(e), float(m), int(n))
        for d, e, m, n in zip(
            per.index, per["events"], per["min_ttc_s"], per["near_miss_rows"], strict=True
        )
    ]


# ------------------------------------------------------------------------------ the bench
def _mem_available_bytes() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def pandas_rows_that_fit(rows: int, available_bytes: int | None = None) -> int:
    """How many of ``rows`` the pandas side may take, from MemAvailable and its bytes per row.

    Powers of ten below the fitting count are preferred (10^7 rather than 13,456,000) so runs on
    different machines compare; without /proc/meminfo, 10^7 at most.
    """
    available = _mem_available_bytes() if available_bytes is None else available_bytes
    if available is None:
        return min(rows, 10**7)
    fits = int(available * PANDAS_MEMORY_SHARE / PANDAS_BYTES_PER_ROW)
    if fits >= rows:
        return rows
    return max(10 ** int(math.log10(max(fits, 1))), 1)


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on: CPU, cores, memory, library versions."""
    import pandas as pd

    available = _mem_available_bytes()
    total = (
        os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else None
    )
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(total / 2**30, 1) if total else None,
        "memory_available_gib": round(available / 2**30, 1) if available else None,
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "pyarrow": pa.__version__,
        "pandas": pd.__version__,
        "numpy": np.__version__,
        # Other work on the machine slows both sides; the 1-minute load says how much there was.
        "load_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }


def _time_runs(
    fn: Callable[[], list[DriveNearMisses]], repeats: int, label: str, log: Callable[[str], None]
) -> tuple[list[float], list[DriveNearMisses]]:
    times: list[float] = []
    answer: list[DriveNearMisses] = []
    for k in range(repeats):
        start = time.perf_counter()
        answer = fn()
        times.append(time.perf_counter() - start)
        log(f"  {label} run {k + 1}/{repeats}: {times[-1]:.3f} s, {total_events(answer):,} events")
    return times, answer


def _warm_pandas(store: Path) -> None:
    """Import pandas and read one file, so first-use costs stay out of the pandas timings."""
    import pandas as pd

    files = telemetry_files(store)
    if files:
        pd.read_parquet(files[0], columns=["drive_id", "t_s", "ttc_s"])


def _same(a: list[DriveNearMisses], b: list[DriveNearMisses], what: str) -> None:
    if a != b:
        differ = [(x, y) for x, y in zip(a, b, strict=False) if x != y][:3]
        raise RuntimeError(
            f"DuckDB and pandas disagree on {what}: {len(a)} vs {len(b)} drives, "
            f"{total_events(a)} vs {total_events(b)} events; first differences {differ}"
        )


def _summary(answer: list[DriveNearMisses]) -> dict[str, Any]:
    return {
        "drives_with_near_misses": len(answer),
        "events": total_events(answer),
        "near_miss_rows": sum(d.near_miss_rows for d in answer),
        "min_ttc_s": min((d.min_ttc_s for d in answer), default=None),
    }


def bench_trigger_query(
    rows: int = 10**8,
    pandas_rows: int | None = None,
    folder: str | os.PathLike[str] | None = None,
    repeats: int = 3,
    log: Callable[[str], None] | None = print,
    rows_per_drive: int = ROWS_PER_DRIVE,
    seed: int = 0,
) -> dict[str, Any]:
    """Time the near-miss question with DuckDB and pandas on the same data, in one run; JSON-able.

    ``pandas_rows`` None chooses what fits in memory (:func:`pandas_rows_that_fit`). When it is
    fewer than ``rows``, DuckDB also runs on that same subset for the speed-up, and on all
    rows for the target. Both answers must agree or this raises. Data is cached in ``folder``
    (default ``<system temp>/dojo-bench-query/rows<N>-rpd<M>-seed<S>``).
    """
    rows = _check_count("rows", rows)
    if pandas_rows is not None:
        pandas_rows = _check_count("pandas_rows", pandas_rows)
        if pandas_rows > rows:
            raise DojoConfigError(f"pandas_rows={pandas_rows:,} must not exceed rows={rows:,}.")
    repeats = whole("repeats", repeats, 1)
    say = log or (lambda _: None)
    if folder is None:
        folder = (
            Path(tempfile.gettempdir())
            / "dojo-bench-query"
            / f"rows{rows}-rpd{rows_per_drive}-seed{seed}"
        )
    data = make_telemetry(folder, rows, rows_per_drive=rows_per_drive, seed=seed, progress=say)
    machine = machine_info()
    store = Path(data["store"])

    say(f"DuckDB on all {rows:,} rows ({repeats} runs, a new connection each) ...")
    near_misses_duckdb(store)  # warm-up: imports, extension loading; not counted
    duck_all, answer_all = _time_runs(lambda: near_misses_duckdb(store), repeats, "DuckDB", say)

    wanted = pandas_rows if pandas_rows is not None else pandas_rows_that_fit(rows)
    sub_store, sub_rows = subset_store(data, wanted)
    same_rows = sub_rows == rows
    if same_rows:
        duck_sub, answer_sub = duck_all, answer_all
    else:
        say(f"DuckDB on the pandas subset, {sub_rows:,} rows ...")
        duck_sub, answer_sub = _time_runs(
            lambda: near_misses_duckdb(sub_store), repeats, "DuckDB", say
        )
    say(f"pandas on {sub_rows:,} rows ({repeats} runs) ...")
    _warm_pandas(sub_store)
    pandas_times, answer_pandas = _time_runs(
        lambda: near_misses_pandas(sub_store), repeats, "pandas", say
    )
    _same(answer_sub, answer_pandas, f"{sub_rows:,} rows")

    duck_best, duck_sub_best, pandas_best = min(duck_all), min(duck_sub), min(pandas_times)
    return {
        "benchmark": "trigger query: near misses (TTC < threshold) grouped into events per drive",
        "machine": machine,
        "load_1min_after": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "rows": rows,
        "rows_per_drive": rows_per_drive,
        "drives": data["drives"],
        "seed": seed,
        "threshold_s": NEAR_MISS_TTC_S,
        "event_gap_s": EVENT_GAP_S,
        "data": {
            "folder": str(folder),
            "bytes": data["bytes"],
            "generate_s": data["generate_s"],
            "reused": data["reused"],
        },
        "repeats": repeats,
        "duckdb_s": duck_best,
        "duckdb_runs_s": duck_all,
        "duckdb_rows_per_s": rows / duck_best,
        "answer": _summary(answer_all),
        "pandas_rows": sub_rows,
        "pandas_s": pandas_best,
        "pandas_runs_s": pandas_times,
        "pandas_rows_per_s": sub_rows / pandas_best,
        "duckdb_same_rows_s": duck_sub_best,
        "duckdb_same_rows_runs_s": duck_sub,
        "duckdb_same_rows_per_s": sub_rows / duck_sub_best,
        "answer_same_rows": _summary(answer_sub),
        "answers_agree": True,
        "speedup_vs_pandas": pandas_best / duck_sub_best,
        "target_s": TARGET_S,
        "meets_target": duck_best < TARGET_S,
    }


def format_table(result: dict[str, Any]) -> str:
    """The result for a person: a small table, the speed-up and the target on their own lines."""
    m = result["machine"]
    data = result["data"]
    ans = result["answer"]
    out = [
        f"dojo bench data (trigger query): {result['rows']:,} telemetry rows in {result['drives']} drives, "
        f"near misses TTC < {result['threshold_s']:g} s, events split by gaps > {result['event_gap_s']:g} s",
        f"machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}, "
        f"DuckDB {m['duckdb']}, pandas {m['pandas']}, pyarrow {m['pyarrow']}; "
        f"load {m['load_1min']} before, {result['load_1min_after']} after",
        f"data: {data['bytes'] / 2**30:.2f} GiB zstd Parquet in {data['folder']} "
        + ("(reused)" if data["reused"] else f"(generated in {data['generate_s']:.1f} s)"),
        f"answer: {ans['events']:,} events in {ans['drives_with_near_misses']:,} drives, "
        f"{ans['near_miss_rows']:,} near-miss rows, min TTC {ans['min_ttc_s']:.3f} s",
        "",
        f"{'side':<30}{'rows':>14}{'best s':>10}{'rows/s':>14}   runs s",
    ]

    def line(name: str, n: int, best: float, runs: list[float]) -> str:
        spread = ", ".join(f"{r:.3f}" for r in runs)
        return f"{name:<30}{n:>14,}{best:>10.3f}{n / best:>14,.0f}   {spread}"

    out.append(
        line(
            "DuckDB (catalog, cold conn.)",
            result["rows"],
            result["duckdb_s"],
            result["duckdb_runs_s"],
        )
    )
    if result["pandas_rows"] != result["rows"]:
        out.append(
            line(
                "DuckDB, pandas' rows",
                result["pandas_rows"],
                result["duckdb_same_rows_s"],
                result["duckdb_same_rows_runs_s"],
            )
        )
    out.append(
        line(
            "pandas (read_parquet + ops)",
            result["pandas_rows"],
            result["pandas_s"],
            result["pandas_runs_s"],
        )
    )
    verdict = "met" if result["meets_target"] else "NOT met"
    out += [
        "",
        f"speed-up DuckDB vs pandas on the same {result['pandas_rows']:,} rows: "
        f"{result['speedup_vs_pandas']:.1f}x (answers agree)",
        f"DuckDB on {result['rows']:,} rows: {result['duckdb_s']:.3f} s (target < {result['target_s']:g} s): {verdict}",
    ]
    return "\n".join(out)


__all__ = [
    "EVENT_GAP_S",
    "NEAR_MISS_TTC_S",
    "TARGET_S",
    "TRIGGER_SQL",
    "DriveNearMisses",
    "bench_trigger_query",
    "format_table",
    "machine_info",
    "near_misses_duckdb",
    "near_misses_pandas",
    "pandas_rows_that_fit",
    "telemetry_files",
    "total_events",
]
