"""The trigger-query benchmark's data: synthetic telemetry in the clip store's layout, cached.

It is synthetic but shaped like the fleet's telemetry (:data:`dojo.data.store.TELEMETRY`):
long drives (default 10^6 rows, about 28 h, so 10^8 rows are 100 files rather than 250,000
forty-second ones), speed a random walk between 20 and 35 m/s, lane changes, leader segments,
and closing-in episodes whose TTC dips to a random minimum (about one in five below 1.5 s). It
is written in the clip store's layout, so the catalog reads it as it reads ingested drives, and
it is cached: a marker file records what was generated, and the same request reuses it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

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
from dojo.validate import whole

NEAR_MISS_TTC_S = 1.5  # a row is a near miss when its TTC is under this [s]
DT_S = 0.1  # telemetry step (10 Hz) [s]
ROWS_PER_DRIVE = 1_000_000  # default drive length in rows (about 28 h at 10 Hz)
GENERATOR = 3  # bump when the synthetic data changes, so cached data is regenerated
MARKER = "bench-data.json"
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
        pa.array(lane),  # target_lane: the lane it is in (no replay reads synthetic drives)
        pa.nulls(rows, pa.float64()),  # v0_mps: not logged
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
    """A count of rows: a whole number >= 1."""
    return whole(name, value, 1)


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
    seed = whole("seed", seed, 0)
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


__all__ = [
    "NEAR_MISS_TTC_S",
    "ROWS_PER_DRIVE",
    "drive_id_for",
    "make_telemetry",
    "subset_store",
    "synthetic_telemetry",
    "write_drive",
]
