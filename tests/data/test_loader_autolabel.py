"""The loader's auto-label windows: real fleet video, hand-made auto-label rows beside it.

What each window must hold is said here from the rows written (tests/data/autolabel_support),
not read back through the loader's own encoding.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from dojo.data.catalog import query
from dojo.data.ingest import ingest
from dojo.data.loader import WindowDataset, make_loader
from dojo.data.store import TABLE_FILES
from dojo.errors import DojoConfigError
from dojo.fleet.config import DriveConfig
from dojo.fleet.drive import Fleet
from dojo.nets.targets import PLANNER_TARGETS
from tests.data.autolabel_support import GRID, grid_of, label_values, write_autolabels

REACH_M = 80.0


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    """2 cars x 12 s of the default rig, ingested; auto-labels beside both drives (salt by drive)."""
    root = tmp_path_factory.mktemp("autoloader")
    logs = root / "logs"
    Fleet(
        DriveConfig(
            out=str(logs), mode="manual", cars=2, minutes=0.2, drive_s=12.0, families=("dense",)
        )
    ).run()
    st = root / "store"
    ingest([logs], st, workers=1)
    _, rows = query(st, "SELECT drive_id FROM drives ORDER BY drive_id")
    salts = {d: 11 * k for k, (d,) in enumerate(rows)}
    for d, salt in salts.items():
        write_autolabels(st, d, salt=salt)
    return st, salts


def _step_of(st: Path, drive: str) -> dict[float, int]:
    t = pq.read_table(st / "drives" / drive / TABLE_FILES["telemetry"]).column("t_s").to_numpy()
    return {round(float(x), 3): i for i, x in enumerate(t)}


def _drive_of(st: Path) -> dict[str, str]:
    _, rows = query(st, "SELECT clip_id, drive_id FROM clips")
    return dict(rows)


def _expected_planner(v: dict[str, np.ndarray], i: int) -> tuple[list[float], list[bool]]:
    """The planner targets of step ``i`` in physical units, and which are asked for."""
    gap = v["lead_gap_m"][i]
    lead = v["lead_id"][i] >= 0 and gap <= REACH_M
    ttc = v["ttc_s"][i]
    inv = min(1.0 / ttc, 2.0) if math.isfinite(ttc) and ttc > 0 else 0.0
    phys = [gap if lead else REACH_M, v["closing_mps"][i] if lead else 0.0, inv]
    valid = [True, bool(lead), bool(lead)]
    for name in PLANNER_TARGETS[3:]:
        side = v[name][i]
        phys.append(min(max(side, 0.5), REACH_M) if math.isfinite(side) else REACH_M)
        valid.append(bool(math.isfinite(side)))
    return phys, valid


def _check_window(s: dict[str, Any], st: Path, drive: str, salt: int, step: int) -> None:
    v = label_values(np.arange(step + 1), salt)
    assert step % 7 != 3, "an incomplete label made a window"
    assert s["action"][0].item() == pytest.approx(v["accel_mps2"][step], abs=1e-5)
    assert s["lane_shift"].item() == v["lane_shift"][step]
    phys, valid = _expected_planner(v, step)
    got = s["planner"].double().numpy()
    decoded = [math.exp(got[0]), got[1], got[2], *np.exp(got[3:]).tolist()]
    assert s["planner_valid"].tolist() == valid, step
    assert decoded == pytest.approx(phys, rel=1e-5, abs=1e-5), step
    assert bool(s["has_occupancy"]) == (step % 5 == 0)
    if step % 5 == 0:
        assert torch.equal(s["occupancy"], torch.from_numpy(grid_of(step, salt)))
    else:
        assert not s["occupancy"].any()


def test_autolabel_windows_carry_the_rows_of_their_target_frames(
    store: tuple[Path, dict[str, int]],
) -> None:
    st, salts = store
    telemetry = WindowDataset(st, frames=2, shuffle=False)
    auto = WindowDataset(st, frames=2, shuffle=False, labels="autolabel")
    assert auto.occupancy_shape == GRID
    assert auto.occupancy_spec is not None and auto.occupancy_spec.forward_m == 80.0
    assert auto.occupancy_spec.rows == GRID[0] and auto.occupancy_spec.cols == GRID[1]
    drive_of = _drive_of(st)
    steps = {d: _step_of(st, d) for d in salts}
    base = list(telemetry)
    want = [
        (s["clip_id"], int(s["frame"]))
        for s in base
        if steps[drive_of[s["clip_id"]]][round(float(s["t_s"]), 3)] % 7 != 3
    ]
    got = list(auto)
    assert [(s["clip_id"], int(s["frame"])) for s in got] == want
    assert auto.unlabelled_windows == len(base) - len(want) > 0
    assert auto.num_windows == len(want)
    for s in got:
        d = drive_of[s["clip_id"]]
        _check_window(s, st, d, salts[d], steps[d][round(float(s["t_s"]), 3)])
    # the images, the speed and the steering are the telemetry path's own
    same = {(s["clip_id"], int(s["frame"])): s for s in base}
    for s in got[::7]:
        b = same[(s["clip_id"], int(s["frame"]))]
        assert torch.equal(s["images"], b["images"]) and s["speed_mps"] == b["speed_mps"]
        assert s["action"][1] == b["action"][1]
    # batches hold the same as the windows, field by field
    batches = list(make_loader(WindowDataset(st, frames=2, shuffle=False, labels="autolabel"), 8))
    planner = torch.cat([b["planner"] for b in batches])
    assert torch.equal(planner, torch.stack([s["planner"] for s in got]))
    assert torch.equal(
        torch.cat([b["planner_valid"] for b in batches]),
        torch.stack([s["planner_valid"] for s in got]),
    )
    assert torch.equal(
        torch.cat([b["occupancy"] for b in batches]), torch.stack([s["occupancy"] for s in got])
    )
    assert "planner" not in base[0]  # the telemetry path has no planner targets


def test_a_drive_without_auto_labels_is_left_out_and_counted(
    store: tuple[Path, dict[str, int]], tmp_path: Path
) -> None:
    st, salts = store
    copy = tmp_path / "store"
    shutil.copytree(st, copy)
    full = WindowDataset(copy, frames=2, shuffle=False)
    drive_of = _drive_of(copy)
    with_windows = {drive_of[c] for c in full.clip_ids()}
    gone = sorted(with_windows)[0]
    (copy / "drives" / gone / TABLE_FILES["autolabels"]).unlink()
    auto = WindowDataset(copy, frames=2, shuffle=False, labels="autolabel")
    assert {drive_of[c] for c in auto.clip_ids()} == with_windows - {gone}
    kept = sum(1 for s in full if drive_of[s["clip_id"]] != gone)
    assert auto.num_windows + auto.unlabelled_windows == full.num_windows
    assert auto.num_windows < kept  # the labelled drive's incomplete steps are left out too


def test_autolabel_labels_are_checked(store: tuple[Path, dict[str, int]], tmp_path: Path) -> None:
    st, salts = store
    with pytest.raises(DojoConfigError, match="labels"):
        WindowDataset(st, labels="lidar")
    copy = tmp_path / "bare"
    shutil.copytree(st, copy)
    for d in salts:
        (copy / "drives" / d / TABLE_FILES["autolabels"]).unlink()
    with pytest.raises(DojoConfigError, match="dojo autolabel"):
        WindowDataset(copy, labels="autolabel")
    # the store is as it was: the telemetry path still reads it whole
    assert WindowDataset(copy, frames=2).num_windows == WindowDataset(st, frames=2).num_windows
