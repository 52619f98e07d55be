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

**The data** is synthetic but shaped like the fleet's telemetry (:data:`dojo.data.store.TELEMETRY`):
long drives (default 10^6 rows, about 28 h, so 10^8 rows are 100 files rather than 250,000
forty-second ones), speed a random walk between 20 and 35 m/s, lane changes, leader segments,
and closing-in episodes whose TTC dips to a random minimum (about one in five below 1.5 s). It
is written in the clip store's layout, so the catalog reads it as it reads ingested drives, and
it is cached: a marker file records what was generated, and the same request reuses it.

When pandas cannot hold all rows in memory it runs on the first drives only, and DuckDB is timed
on exactly those drives too (a second store of hard links), so the speed-up compares like with
like; DuckDB on all rows is what is held against the target.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dojo.data.catalog import connect
from dojo.data.store import (
    DRIVE_ID_CHARS,
    DRIVES,
    FORMAT,
    TABLE_FILES,
    TABLES,
    TELEMETRY,
    VERSION,
    parquet_options,
)
from dojo.errors import DojoConfigError
from dojo.fleet.bench import cpu_model

TARGET_S = 2.0  # the target for DuckDB over all rows [s]
NEAR_MISS_TTC_S = 1.5  # a row is a near miss when its TTC is under this [s]
EVENT_GAP_S = 1.0  # a near-miss row more than this after the previous one starts a new event [s]
_GAP_TOLERANCE_S = 1e-6  # absorbs binary rounding of 10 Hz times, far below one step [s]
DT_S = 0.1  # telemetry step (10 Hz) [s]
ROWS_PER_DRIVE = 1_000_000  # default drive length in rows (about 28 h at 10 Hz)
GENERATOR = 2  # bump when the synthetic data changes, so cached data is regenerated
MARKER = "bench-data.json"
# Peak memory of the pandas side per telemetry row (three columns read, the string drive id,
# pyarrow's buffers during conversion, the concatenation copy) [bytes], measured on 10^7 rows
# with some margin; used to choose how many rows pandas can be given.
PANDAS_BYTES_PER_ROW = 120
PANDAS_MEMORY_SHARE = 0.6  # share of MemAvailable the pandas side may plan to use
DISK_BYTES_PER_ROW = 40  # generous upper bound of the zstd Parquet size per row [bytes]

_SPEED_MPS = (20.0, 35.0)
_GAP_RANGE_M = (8.0, 90.0)
_STEER_RAD = 0.05
_LANES = 4
_EPISODE_EVERY_ROWS = 600  # a closing-in episode every minute on average
_EPISODE_ROWS = (20, 80)  # its length, 2 to 8 s
_TTC_SLOPE_S_PER_ROW = 0.25  # how fast TTC falls towards and rises from its minimum
_LEADER_TOGGLE_EVERY_ROWS = 600
_LANE_CHANGE_EVERY_ROWS = 300
_COMMAND_LEAD_ROWS = 30  # the change command is given 3 s before the lane change
_TAKEOVER_ROWS = 50  # the safety driver holds control 5 s after a close call (autonomous)
_MODES = ("manual", "shadow", "autonomous")
_DRIVERS = ("human", "network", "safety_driver")

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


# ------------------------------------------------------------------------------ the data
def _reflect(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Fold a walk back into [lo, hi] as if it bounced off both ends (keeps its step sizes)."""
    width = hi - lo
    y = np.mod(x - lo, 2.0 * width)
    return lo + np.where(y > width, 2.0 * width - y, y)


def drive_id_for(seed: int, index: int) -> str:
    """A drive id shaped like the store's (hex of a SHA-256), fixed by seed and drive index."""
    return hashlib.sha256(f"dojo-bench-telemetry/{seed}/{index}".encode()).hexdigest()[
        :DRIVE_ID_CHARS
    ]


def synthetic_telemetry(drive_id: str, rows: int, index: int, seed: int) -> pa.Table:
    """One drive's telemetry (``rows`` steps at 10 Hz from t = 0), vectorised in numpy.

    Every column follows a plausible process rather than plain noise, so the Parquet files
    compress and the near-miss question finds events of realistic shape: closing-in episodes
    whose TTC falls linearly to a random minimum and rises again.
    """
    rng = np.random.default_rng([seed, index])
    mode = _MODES[index % len(_MODES)]
    t_s = np.arange(rows, dtype=np.float64) / 10.0  # k / 10 rounds once, unlike k * 0.1

    start_mps = rng.uniform(*_SPEED_MPS)
    speed_mps = _reflect(start_mps + np.cumsum(rng.normal(0.0, 0.05, rows)), *_SPEED_MPS)
    accel_mps2 = np.empty(rows)
    accel_mps2[0] = 0.0
    np.subtract(speed_mps[1:], speed_mps[:-1], out=accel_mps2[1:])
    accel_mps2 /= DT_S
    steer_rad = _reflect(np.cumsum(rng.normal(0.0, 0.002, rows)), -_STEER_RAD, _STEER_RAD)

    # Lanes: a change now and then, one lane at a time, bouncing off the road's edges.
    changes = np.flatnonzero(rng.random(rows) < 1.0 / _LANE_CHANGE_EVERY_ROWS)
    step = np.zeros(rows, dtype=np.int64)
    step[changes] = rng.choice(np.array([-1, 1]), changes.size)
    folded = np.mod(int(rng.integers(0, _LANES)) + np.cumsum(step), 2 * (_LANES - 1))
    lane = np.where(folded > _LANES - 1, 2 * (_LANES - 1) - folded, folded).astype(np.int16)
    command = np.zeros(rows, dtype=np.int16)  # KEEP_LANE
    went_left = lane[changes] > lane[np.maximum(changes - 1, 0)]  # lane 0 is the rightmost
    lead = (changes[:, None] - np.arange(1, _COMMAND_LEAD_ROWS + 1)[None, :]).clip(0)
    command[lead] = np.where(went_left, 1, 2)[:, None].astype(np.int16)  # CHANGE_LEFT / RIGHT
    exits = rng.integers(0, rows, max(rows // 36_000, 1))  # TAKE_EXIT about once an hour
    command[(exits[:, None] + np.arange(_COMMAND_LEAD_ROWS)[None, :]).clip(max=rows - 1)] = 3

    # Leaders come and go; the slot is fixed while the same one stays ahead.
    toggles = np.cumsum(rng.random(rows) < 1.0 / _LEADER_TOGGLE_EVERY_ROWS)
    present = toggles % 2 == 0
    gap_m = _reflect(
        rng.uniform(*_GAP_RANGE_M) + np.cumsum(rng.normal(0.0, 0.2, rows)), *_GAP_RANGE_M
    )

    # Closing-in episodes: TTC dips to a random minimum; overlapping episodes keep the smaller.
    episodes = int(rng.poisson(rows / _EPISODE_EVERY_ROWS))
    starts = rng.integers(0, rows, episodes)
    lengths = rng.integers(_EPISODE_ROWS[0], _EPISODE_ROWS[1] + 1, episodes)
    minima_s = 0.3 + rng.exponential(5.0, episodes)
    closing_mps = rng.uniform(2.0, 8.0, episodes)
    which = np.repeat(np.arange(episodes), lengths)
    within = np.arange(which.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    at = starts[which] + within
    inside = at < rows
    at, which, within = at[inside], which[inside], within[inside]
    ttc_s = np.full(rows, np.inf)
    np.minimum.at(
        ttc_s,
        at,
        minima_s[which] + _TTC_SLOPE_S_PER_ROW * np.abs(within - (lengths[which] - 1) / 2.0),
    )
    closing = np.isfinite(ttc_s)
    present |= closing
    gap_m[at] = ttc_s[at] * closing_mps[which]
    leader = np.where(present, (toggles * 7919 + index) % 31, -1).astype(np.int32)

    driver = np.zeros(rows, dtype=np.int8)  # human
    if mode == "autonomous":
        driver[:] = 1  # network
        close_calls = starts[minima_s < NEAR_MISS_TTC_S]
        held = (close_calls[:, None] + np.arange(_TAKEOVER_ROWS)[None, :]).clip(max=rows - 1)
        driver[held] = 2  # safety_driver

    columns = [
        pa.repeat(drive_id, rows),
        pa.array(t_s),
        pa.array(speed_mps),
        pa.array(accel_mps2),
        pa.array(steer_rad),
        pa.array(lane),
        pa.array(np.where(closing, ttc_s, 0.0), mask=~closing),
        pa.array(gap_m, mask=~present),
        pa.array(leader),
        pa.array(command),
        pa.DictionaryArray.from_arrays(pa.array(driver), pa.array(_DRIVERS)).cast(pa.string()),
        pa.nulls(rows, pa.string()),
    ]
    return pa.Table.from_arrays(columns, schema=TELEMETRY)


def _drive_row(drive_id: str, rows: int, index: int, seed: int) -> pa.Table:
    mode = _MODES[index % len(_MODES)]
    config = {"synthetic": True, "generator": GENERATOR, "seed": seed, "index": index, "mode": mode}
    row: dict[str, Any] = {
        "drive_id": drive_id,
        "source": f"synthetic-{seed}-{index:06d}.mcap",
        "source_sha256": hashlib.sha256(drive_id.encode()).hexdigest(),
        "source_bytes": 0,
        "status": "complete",
        "car_id": f"car-{index % 8:03d}",
        "drive": index // 8,
        "family": "highway",
        "seed": seed,
        "mode": mode,
        "policy": "human" if mode == "manual" else "naive",
        "logging": "triggers",
        "cameras": [],
        "width_px": 0,
        "height_px": 0,
        "rgb": False,
        "fps": 10.0,
        "keyframe_interval": 10,
        "frames": 0,
        "duration_s": (rows - 1) * DT_S,
        "config": json.dumps(config),
        "ingested_at": datetime.now(timezone.utc),
    }
    return pa.Table.from_pylist([row], schema=DRIVES)


def write_drive(store: str | os.PathLike[str], telemetry: pa.Table, drive: pa.Table) -> int:
    """Put one drive into a local store as ingest does (built under tmp/, moved in whole); bytes.

    Tables other than telemetry and drive are written empty so every catalog view has files.
    """
    root = Path(store)
    drive_id = str(drive.column("drive_id")[0])
    work = root / "tmp" / f"{os.getpid()}-{os.urandom(4).hex()}-{drive_id}"
    work.mkdir(parents=True)
    content = {"telemetry": telemetry, "drives": drive}
    for name, schema in TABLES.items():
        table = content.get(name, schema.empty_table())
        pq.write_table(table, work / TABLE_FILES[name], **parquet_options(schema))
    size = sum(p.stat().st_size for p in work.iterdir())
    final = root / "drives" / drive_id
    if final.exists():
        shutil.rmtree(final)
    os.replace(work, final)
    return size


def _plan(rows: int, rows_per_drive: int) -> list[int]:
    full, rest = divmod(rows, rows_per_drive)
    return [rows_per_drive] * full + ([rest] if rest else [])


def _check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise DojoConfigError(f"{name}={value!r} must be a whole number of rows, at least 1.")
    return int(value)


def _marker(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _claim(folder: Path) -> None:
    """Empty ``folder`` for new data, but only if it is new, empty or earlier benchmark data."""
    if folder.exists() and not folder.is_dir():
        raise DojoConfigError(f"folder={str(folder)!r} is a file, not a folder.")
    if folder.is_dir() and any(folder.iterdir()):
        if _marker(folder) is None:
            raise DojoConfigError(
                f"folder={str(folder)!r} holds files that are not Dojo benchmark data; "
                "give an empty or new folder."
            )
        for entry in folder.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    folder.mkdir(parents=True, exist_ok=True)


def make_telemetry(
    folder: str | os.PathLike[str],
    rows: int,
    rows_per_drive: int = ROWS_PER_DRIVE,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """Write ``rows`` rows of synthetic telemetry as a clip store at ``folder/store``; a summary.

    Drives of ``rows_per_drive`` rows (the last one shorter) are generated and written one per
    task, ``workers`` at a time (default: one per core; numpy and Parquet release the GIL for
    the heavy parts), so memory stays at a few drives whatever ``rows`` is. A marker file in
    ``folder``, written last, records what is there; the same request finds it and returns at
    once (``reused`` true). The summary: rows, drives, drive_ids (generation order), bytes on
    disk, seconds spent generating.
    """
    rows = _check_count("rows", rows)
    rows_per_drive = _check_count("rows_per_drive", rows_per_drive)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DojoConfigError(f"seed={seed!r} must be a whole number, at least 0.")
    seed = int(seed)
    say = progress or (lambda _: None)
    base = Path(folder)
    request = {"rows": rows, "rows_per_drive": rows_per_drive, "seed": seed, "generator": GENERATOR}
    found = _marker(base)
    if (
        found
        and found.get("complete")
        and all(found.get(k) == v for k, v in request.items())
        and (base / "store" / "store.json").is_file()
    ):
        say(f"reusing {rows:,} telemetry rows in {base} (generated earlier)")
        return {**found, "reused": True}
    _claim(base)
    need = rows * DISK_BYTES_PER_ROW
    free = shutil.disk_usage(base).free
    if need > free:
        raise DojoConfigError(
            f"rows={rows:,} needs about {need / 2**30:.1f} GiB in {base}, which has "
            f"{free / 2**30:.1f} GiB free; give fewer rows or another folder."
        )
    (base / MARKER).write_text(json.dumps({**request, "complete": False}))
    store = base / "store"
    for sub in ("drives", "quarantine", "tmp", "datasets"):
        (store / sub).mkdir(parents=True, exist_ok=True)
    (store / "store.json").write_text(json.dumps({"format": FORMAT, "version": VERSION}))

    plan = _plan(rows, rows_per_drive)
    ids = [drive_id_for(seed, i) for i in range(len(plan))]
    say(
        f"generating {rows:,} telemetry rows: {len(plan)} drives of up to {rows_per_drive:,} rows in {store}"
    )
    start = time.perf_counter()

    def one(i: int) -> int:
        telemetry = synthetic_telemetry(ids[i], plan[i], i, seed)
        return write_drive(store, telemetry, _drive_row(ids[i], plan[i], i, seed))

    total_bytes = done_rows = 0
    next_report = 0.1
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        for i, size in enumerate(pool.map(one, range(len(plan)))):
            total_bytes += size
            done_rows += plan[i]
            if done_rows >= next_report * rows or i == len(plan) - 1:
                elapsed = time.perf_counter() - start
                say(
                    f"  {done_rows:,} rows ({i + 1}/{len(plan)} drives), "
                    f"{total_bytes / 2**20:,.0f} MiB, {elapsed:.1f} s"
                )
                next_report = math.floor(done_rows / rows * 10 + 1) / 10
    seconds = time.perf_counter() - start
    summary = {
        **request,
        "complete": True,
        "drives": len(plan),
        "drive_ids": ids,
        "drive_rows": plan,
        "bytes": total_bytes,
        "generate_s": seconds,
        "store": str(store),
    }
    (base / MARKER).write_text(json.dumps(summary))
    say(f"generated {rows:,} rows in {seconds:.1f} s, {total_bytes / 2**30:.2f} GiB on disk")
    return {**summary, "reused": False}


def subset_store(data: dict[str, Any], rows: int) -> tuple[Path, int]:
    """A store of the first drives holding at most ``rows`` rows (at least one drive); (path, rows).

    The drives' files are hard-linked (copied where links are impossible), so the subset costs
    no disk and DuckDB reads the very bytes pandas reads.
    """
    plan: list[int] = data["drive_rows"]
    take, covered = 0, 0
    while take < len(plan) and covered + plan[take] <= rows:
        covered += plan[take]
        take += 1
    if take == 0:
        take, covered = 1, plan[0]
    source = Path(data["store"])
    if take == len(plan):
        return source, covered
    target = source.parent / f"subset-{take}-drives"
    if (target / "store.json").exists() and len(list((target / "drives").iterdir())) == take:
        return target, covered
    if target.exists():
        shutil.rmtree(target)
    for sub in ("drives", "quarantine", "tmp", "datasets"):
        (target / sub).mkdir(parents=True)
    shutil.copy2(source / "store.json", target / "store.json")
    for drive_id in data["drive_ids"][:take]:
        (target / "drives" / drive_id).mkdir()
        for f in (source / "drives" / drive_id).iterdir():
            try:
                os.link(f, target / "drives" / drive_id / f.name)
            except OSError:
                shutil.copy2(f, target / "drives" / drive_id / f.name)
    return target, covered


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
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise DojoConfigError(
            f"repeats={repeats!r} must be a whole number of timed runs, at least 1."
        )
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
    "drive_id_for",
    "format_table",
    "machine_info",
    "make_telemetry",
    "near_misses_duckdb",
    "near_misses_pandas",
    "pandas_rows_that_fit",
    "subset_store",
    "synthetic_telemetry",
    "telemetry_files",
    "total_events",
    "write_drive",
]
