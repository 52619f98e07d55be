"""`dojo bench data --parts autolabel`: offline auto-labeling speed beside reading its inputs.

The same store (a fleet's logs, ingested once, not timed) is labelled ``repeats`` times, its
label files removed between runs: once with vector labels only (every frame, grids off by
making ``grid_every`` longer than any drive) and once with the default grids. The reference is
the floor: reading the tables the labeler reads (scene, telemetry, drive) for every drive, with
nothing computed. Target (issue 18): at least :data:`TARGET_FRAMES_PER_S` frames a second.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from dojo.bench.ingest import make_logs
from dojo.bench.machine import machine_info
from dojo.data.autolabel import AutolabelConfig, autolabel
from dojo.data.autolabel.stage import FILE
from dojo.data.autolabel.visibility import scene_visibility
from dojo.data.ingest import ingest
from dojo.data.store import TABLE_FILES, Store
from dojo.validate import positive, whole

TARGET_FRAMES_PER_S = 20_000.0
NO_GRIDS = 10**9  # grid_every longer than any drive: the first frame only


def _clear(st: Store) -> None:
    for d in st.drive_ids():
        path = st.path("drives", d, FILE)
        if st.fs.exists(path):
            st.fs.rm(path)


def _read_inputs(st: Store) -> float:
    tick = time.perf_counter()
    for d in st.drive_ids():
        for table in ("drives", "telemetry", "scene"):
            pq.ParquetFile(st.path("drives", d, TABLE_FILES[table])).read()  # as the labeler reads
    return time.perf_counter() - tick


def bench_autolabel(
    cars: int = 8,
    seconds: float = 120.0,
    repeats: int = 3,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Label the same ingested fleet ``repeats`` times with and without grids; JSON-able."""
    cars, seconds = whole("cars", cars, 1), positive("seconds", seconds)
    repeats = whole("repeats", repeats, 1)
    say = log or (lambda _: None)
    with tempfile.TemporaryDirectory(prefix="dojo-bench-autolabel-") as tmp:
        root = Path(tmp)
        say(f"driving {cars} cars x {seconds:g} s and ingesting (not timed) ...")
        files = make_logs(root / "logs", cars, seconds)
        ingest(files, root / "store", workers=None)
        st = Store(root / "store")
        runs: dict[str, list[float]] = {"read": [], "vectors": [], "grids": []}
        frames = grids = 0
        for k in range(repeats):
            say(f"run {k + 1}/{repeats}: reading the inputs, labelling without and with grids ...")
            runs["read"].append(_read_inputs(st))
            for name, every in (("vectors", NO_GRIDS), ("grids", AutolabelConfig().grid_every)):
                _clear(st)
                out = autolabel(st, scene_visibility, config=AutolabelConfig(grid_every=every))
                runs[name].append(out.wall_s)
                frames = out.frames
                if name == "grids":
                    grids = out.grids
    best = {name: min(times) for name, times in runs.items()}
    fps = {name: frames / best[name] for name in ("vectors", "grids")}
    return {
        "machine": machine_info(),
        "drives": len(files),
        "frames": frames,
        "grids": grids,
        "grid_every": AutolabelConfig().grid_every,
        "runs_s": runs,
        "read_inputs_frames_per_s": frames / best["read"],
        "autolabel_frames_per_s": fps["vectors"],
        "autolabel_with_grids_frames_per_s": fps["grids"],
        "ratio_autolabel_to_read_time": best["vectors"] / best["read"],
        "target_frames_per_s": TARGET_FRAMES_PER_S,
        "meets_target": bool(fps["vectors"] >= TARGET_FRAMES_PER_S),
    }


def format_autolabel(r: dict[str, Any]) -> str:
    verdict = "met" if r["meets_target"] else "NOT met"
    return "\n".join(
        [
            f"autolabel: {r['drives']} drives, {r['frames']:,} frames, best of "
            f"{len(r['runs_s']['vectors'])} runs",
            f"  reading its inputs only     {r['read_inputs_frames_per_s']:>10,.0f} frames/s",
            f"  labels (no grids)           {r['autolabel_frames_per_s']:>10,.0f} frames/s "
            f"({r['ratio_autolabel_to_read_time']:.1f}x the read time)",
            f"  labels + a grid every {r['grid_every']} frames "
            f"{r['autolabel_with_grids_frames_per_s']:>8,.0f} frames/s ({r['grids']:,} grids)",
            f"  target >= {r['target_frames_per_s']:,.0f} frames/s (labels): {verdict}",
        ]
    )


__all__ = ["TARGET_FRAMES_PER_S", "bench_autolabel", "format_autolabel"]
