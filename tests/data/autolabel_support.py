"""Hand-made auto-label files beside a store's drives (the AUTOLABELS schema, every field known).

The values are arbitrary functions of the decision step, so a test can tell every row apart
and say independently what a window built from it must hold.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dojo.data.store import AUTOLABELS, TABLE_FILES

GRID = (200, 80)  # the auto-labeler's default grid: 80 m ahead, 20 m behind and aside, 0.5 m


def label_values(i: np.ndarray, salt: int) -> dict[str, np.ndarray]:
    """The label fields of decision steps ``i`` (NaN: null)."""
    f = i.astype(np.float64)
    lead = (i + salt) % 4 != 0  # every fourth step: no lead
    gap = 3.0 + (7.0 * f + salt) % 110.0  # some beyond the 80 m reach
    closing = ((f % 13.0) - 4.0) * 0.7
    ttc = np.where(closing > 0, gap / np.maximum(closing, 1e-9), np.inf)
    return {
        "accel_mps2": -3.0 + (f % 17.0) * 0.37 + 0.01 * salt,
        "lane_shift": ((i + salt) % 3 - 1).astype(np.float64),
        "lead_id": np.where(lead, 1 + i % 5, -1).astype(np.float64),
        "lead_gap_m": np.where(lead, gap, 1.0e4),
        "closing_mps": np.where(lead, closing, 0.0),
        "ttc_s": np.where(lead, ttc, np.inf),
        "left_ahead_gap_m": np.where(i % 5 == 1, np.nan, 2.0 + (3.0 * f) % 120.0),
        "left_behind_gap_m": np.where(i % 5 == 1, np.nan, 1.0 + (5.0 * f) % 60.0),
        "right_ahead_gap_m": np.where(i % 6 == 2, np.nan, 4.0 + (11.0 * f) % 95.0),
        "right_behind_gap_m": np.where(i % 6 == 2, np.nan, 1.5 + (2.0 * f) % 30.0),
    }


def grid_of(i: int, salt: int) -> np.ndarray:
    """The (200, 80) uint8 class grid of decision step ``i``."""
    rng = np.random.default_rng([i, salt])
    return rng.integers(0, 5, size=GRID, dtype=np.uint8)


def write_autolabels(
    store: Path,
    drive_id: str,
    *,
    salt: int = 0,
    complete: Callable[[np.ndarray], np.ndarray] = lambda i: i % 7 != 3,
    grid_every: int = 5,
) -> pa.Table:
    """Write ``drives/<drive_id>/autolabels.parquet`` for every telemetry row; the table."""
    folder = store / "drives" / drive_id
    tel = pq.read_table(folder / TABLE_FILES["telemetry"])
    n = tel.num_rows
    i = np.arange(n)
    v = label_values(i, salt)
    done = np.asarray(complete(i), dtype=bool)
    has_grid = i % grid_every == 0
    grids = [grid_of(int(k), salt).tobytes() if has_grid[k] else None for k in range(n)]
    flows = [bytes(2 * GRID[0] * GRID[1]) if has_grid[k] else None for k in range(n)]

    def col(name: str) -> pa.Array:
        a = np.where(done, v[name], np.nan) if name == "accel_mps2" else v[name]
        return pa.array(a, mask=np.isnan(a))

    table = pa.table(
        {
            "drive_id": [drive_id] * n,
            "frame": i.astype(np.int32),
            "t_s": tel.column("t_s").to_numpy(),
            "version": np.ones(n, dtype=np.int16),
            "label_source": ["autolabel"] * n,
            "driver": tel.column("driver").to_pylist(),
            "complete": done,
            "accel_mps2": col("accel_mps2"),
            "lane_shift": pa.array(v["lane_shift"].astype(np.int8), mask=~done),
            "lead_id": v["lead_id"].astype(np.int32),
            **{
                k: col(k)
                for k in (
                    "lead_gap_m",
                    "closing_mps",
                    "ttc_s",
                    "left_ahead_gap_m",
                    "left_behind_gap_m",
                    "right_ahead_gap_m",
                    "right_behind_gap_m",
                )
            },
            "visible_objects": np.full(n, 3, dtype=np.int16),
            "grid_rows": np.where(has_grid, GRID[0], 0).astype(np.int16),
            "grid_cols": np.where(has_grid, GRID[1], 0).astype(np.int16),
            "cell_m": np.full(n, 0.5),
            "grid_forward_m": np.full(n, 80.0),
            "grid": pa.array(grids, type=pa.binary()),
            "flow": pa.array(flows, type=pa.binary()),
        },
        schema=AUTOLABELS,
    )
    pq.write_table(table, folder / TABLE_FILES["autolabels"], row_group_size=100)
    return table


__all__ = ["GRID", "grid_of", "label_values", "write_autolabels"]
