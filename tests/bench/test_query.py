"""`dojo bench data` trigger query: the data's shape, both answers against known ones, the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dojo.bench.query import (
    EVENT_GAP_S,
    NEAR_MISS_TTC_S,
    DriveNearMisses,
    bench_trigger_query,
    format_table,
    near_misses_duckdb,
    near_misses_pandas,
    pandas_rows_that_fit,
    total_events,
)
from dojo.bench.query_data import make_telemetry, write_drive
from dojo.data.catalog import connect
from dojo.data.store import DRIVES, TELEMETRY, Store
from dojo.errors import DojoConfigError

ROWS, ROWS_PER_DRIVE = 200_000, 20_000


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("benchquery") / "data"
    messages: list[str] = []
    out = make_telemetry(
        folder, ROWS, rows_per_drive=ROWS_PER_DRIVE, seed=3, progress=messages.append
    )
    out["_folder"] = folder
    out["_messages"] = messages
    return out


def brute_force(rows: list[tuple[str, float, float | None]]) -> list[DriveNearMisses]:
    """The question answered the slow, obvious way: (drive_id, t_s, ttc_s) rows, any order."""
    by_drive: dict[str, list[tuple[float, float]]] = {}
    for drive_id, t_s, ttc_s in rows:
        if ttc_s is not None and ttc_s < NEAR_MISS_TTC_S:
            by_drive.setdefault(drive_id, []).append((t_s, ttc_s))
    out = []
    for drive_id in sorted(by_drive):
        near = sorted(by_drive[drive_id])
        events = 1 + sum(
            1 for (a, _), (b, _) in zip(near, near[1:], strict=False) if b - a > EVENT_GAP_S + 1e-6
        )
        out.append(DriveNearMisses(drive_id, events, min(v for _, v in near), len(near)))
    return out


def test_layout_and_schema(data: dict) -> None:
    store = Path(data["store"])
    assert json.loads((store / "store.json").read_text()) == {
        "format": "dojo-clip-store",
        "version": 1,
    }
    assert data["drives"] == ROWS // ROWS_PER_DRIVE and data["rows"] == ROWS and data["bytes"] > 0
    assert sorted(Store(store).drive_ids()) == sorted(data["drive_ids"])
    first = store / "drives" / data["drive_ids"][0]
    table = pq.read_table(first / "telemetry.parquet")
    assert table.schema.equals(TELEMETRY)
    assert pq.read_table(first / "drive.parquet").schema.equals(DRIVES)
    con = connect(store)
    assert con.sql("SELECT count(*) FROM telemetry").fetchall() == [(ROWS,)]
    assert con.sql("SELECT count(*) FROM drives").fetchall() == [(data["drives"],)]
    assert any("generated" in m for m in data["_messages"])


def test_values_are_plausible(data: dict) -> None:
    first = Path(data["store"]) / "drives" / data["drive_ids"][0] / "telemetry.parquet"
    t = pq.read_table(first).to_pydict()
    t_s = np.array(t["t_s"])
    assert t_s[0] == 0.0 and np.allclose(np.diff(t_s), 0.1)
    speed = np.array(t["speed_mps"])
    assert speed.min() >= 20.0 and speed.max() <= 35.0
    assert set(t["lane"]) <= {0, 1, 2, 3} and set(t["command"]) <= {0, 1, 2, 3}
    ttc = [v for v in t["ttc_s"] if v is not None]
    assert 0 < len(ttc) < 0.3 * len(t_s)  # mostly null
    assert any(v < NEAR_MISS_TTC_S for v in ttc) and all(v > 0 for v in ttc)
    assert all((g is None) == (lead == -1) for g, lead in zip(t["gap_m"], t["leader"], strict=True))
    assert set(t["driver"]) <= {"human", "network", "safety_driver"}
    assert all(v is None for v in t["extra"])


def test_duckdb_and_pandas_agree_with_brute_force(data: dict) -> None:
    store = data["store"]
    rows = connect(store).sql("SELECT drive_id, t_s, ttc_s FROM telemetry").fetchall()
    expected = brute_force(rows)
    assert total_events(expected) > 10
    assert near_misses_duckdb(store) == expected
    assert near_misses_pandas(store) == expected


def _hand_store(root: Path) -> Path:
    """Three drives with near misses at known times (drive c's rows shuffled on purpose)."""
    Store(root, create=True)
    t_s = np.arange(130) / 10.0  # 0.0 .. 12.9 s
    cases = {
        # a: 1.0-1.2 s, then 2.2 s (exactly 1 s later: same event), 3.3 s (1.1 s later: new),
        # 10.0 s (new); 1.5 s itself is not a near miss. Three events, min 0.4 s.
        "a" * 24: {10: 1.2, 11: 0.4, 12: 1.0, 22: 1.4, 33: 0.9, 40: 1.5, 100: 1.3, 101: 2.0},
        "b" * 24: {5: 1.5, 6: 3.0, 50: 8.0},  # nothing under 1.5 s: not in the answer
        "c" * 24: {70: 0.7, 71: 5.0, 90: 1.49},  # 0.7 at 7.0 s, 1.49 at 9.0 s: two events
    }
    rng = np.random.default_rng(0)
    for drive_id, ttc_at in cases.items():
        ttc = [ttc_at.get(k) for k in range(t_s.size)]
        order = rng.permutation(t_s.size) if drive_id.startswith("c") else np.arange(t_s.size)
        n = t_s.size
        columns = {
            "drive_id": [drive_id] * n,
            "t_s": t_s[order].tolist(),
            "speed_mps": [25.0] * n,
            "accel_mps2": [0.0] * n,
            "steer_rad": [0.0] * n,
            "lane": [1] * n,
            "ttc_s": [ttc[k] for k in order],
            "gap_m": [None] * n,
            "leader": [-1] * n,
            "command": [0] * n,
            "driver": ["human"] * n,
            "target_lane": [1] * n,
            "v0_mps": [None] * n,
            "extra": [None] * n,
        }
        telemetry = pa.Table.from_pydict(columns, schema=TELEMETRY)
        drive = pa.Table.from_pylist([{"drive_id": drive_id, "status": "complete"}], schema=DRIVES)
        write_drive(root, telemetry, drive)
    return root


def test_hand_made_case_has_the_known_answer(tmp_path: Path) -> None:
    store = _hand_store(tmp_path / "hand")
    expected = [
        DriveNearMisses("a" * 24, 3, 0.4, 6),
        DriveNearMisses("c" * 24, 2, 0.7, 2),
    ]
    rows = connect(store).sql("SELECT drive_id, t_s, ttc_s FROM telemetry").fetchall()
    assert brute_force(rows) == expected
    assert near_misses_duckdb(store) == expected
    assert near_misses_pandas(store) == expected
    assert total_events(expected) == 5


def test_cached_data_is_reused(data: dict) -> None:
    again = make_telemetry(data["_folder"], ROWS, rows_per_drive=ROWS_PER_DRIVE, seed=3)
    assert again["reused"] and again["drive_ids"] == data["drive_ids"]


def test_foreign_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(DojoConfigError, match="not Dojo benchmark data"):
        make_telemetry(tmp_path, 1000)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_bench_on_a_subset_reports_the_ratio(data: dict) -> None:
    messages: list[str] = []
    result = bench_trigger_query(
        rows=ROWS,
        pandas_rows=ROWS // 2,
        folder=data["_folder"],
        repeats=1,
        log=messages.append,
        rows_per_drive=ROWS_PER_DRIVE,
        seed=3,
    )
    json.dumps(result)  # JSON-able
    assert result["data"]["reused"]
    assert result["pandas_rows"] == ROWS // 2 and result["rows"] == ROWS
    assert (
        result["answers_agree"]
        and result["answer"]["events"] > result["answer_same_rows"]["events"] > 0
    )
    assert result["speedup_vs_pandas"] == pytest.approx(
        result["pandas_s"] / result["duckdb_same_rows_s"]
    )
    assert result["meets_target"] == (result["duckdb_s"] < result["target_s"] == 2.0)
    table = format_table(result)
    assert f"{result['speedup_vs_pandas']:.1f}x" in table and "speed-up" in table
    assert "target < 2 s" in table and "pandas' rows" in table
    assert any("pandas" in m for m in messages)


@pytest.mark.parametrize("rows", [0, -5, 1.5, "100", True, None])
def test_bad_rows_are_refused(rows: object, tmp_path: Path) -> None:
    with pytest.raises(DojoConfigError, match=r"^rows=.* must be a whole number >= 1\.$"):
        bench_trigger_query(rows=rows, folder=tmp_path, log=None)  # type: ignore[arg-type]
    with pytest.raises(DojoConfigError, match=r"^rows="):
        make_telemetry(tmp_path, rows)  # type: ignore[arg-type]


def test_other_bad_inputs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DojoConfigError, match="must not exceed rows"):
        bench_trigger_query(rows=100, pandas_rows=200, folder=tmp_path, log=None)
    with pytest.raises(DojoConfigError, match="repeats"):
        bench_trigger_query(rows=100, repeats=0, folder=tmp_path, log=None)


def test_pandas_rows_follow_memory() -> None:
    assert pandas_rows_that_fit(10**8, available_bytes=10**12) == 10**8
    assert pandas_rows_that_fit(10**8, available_bytes=19 * 10**8) == 10**6  # 10^7 would not fit
    assert pandas_rows_that_fit(10**6, available_bytes=1) == 1
