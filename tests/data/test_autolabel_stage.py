"""`dojo autolabel` over a real store: fleet drive -> ingest -> labels beside the clips."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from dojo.data.autolabel import LABEL_FIELDS, VERSION, AutolabelConfig, autolabel
from dojo.data.autolabel.stage import FILE
from dojo.data.catalog import query
from dojo.data.ingest import ingest
from dojo.data.store import FLOW_STEP_MPS, Store
from dojo.fleet.config import DriveConfig
from dojo.fleet.drive import drive
from dojo.world.occupancy import VEHICLE
from tests.data.test_ingest import tree_digest

FIXTURE = Path(__file__).parents[1] / "fixtures" / "drivelog" / "v-2026-12.mcap"


def everything(scene: Any, _drive: dict[str, Any]) -> np.ndarray:
    return np.ones(scene.present.shape, dtype=bool)


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("autolabel_logs")
    cfg = DriveConfig(
        cars=2,
        minutes=0.2,
        mode="mixed",
        policy="naive",
        families=("stalled", "cut_in"),
        out=str(out),
        drive_s=12.0,
    )
    drive(cfg)
    return out


@pytest.fixture
def store(logs: Path, tmp_path: Path) -> Path:
    root = tmp_path / "store"
    summary = ingest([logs], root, workers=1)
    assert summary.files_ingested >= 2 and not summary.quarantined
    return root


def test_every_frame_is_labelled_whoever_drove_it(store: Path) -> None:
    out = autolabel(store, everything).as_dict()
    for key in ("frames", "frames_labelled", "frames_network_driven"):
        assert out[key] > 0, key
    assert out["frames_labelled"] == out["frames"]
    assert out["frames_network_driven_labelled"] == out["frames_network_driven"]
    assert out["drives_labelled"] == out["drives"] and not out["drives_refused"]
    _, rows = query(store, "SELECT count(*) FROM telemetry")
    assert out["frames"] == rows[0][0]
    _, by = query(
        store,
        "SELECT a.driver = t.driver, count(*) FROM autolabels a JOIN telemetry t "
        "USING (drive_id, t_s) GROUP BY 1",
    )
    assert dict(by) == {True: out["frames"]}  # one label row per telemetry row, same driver
    _, label_rows = query(store, "SELECT DISTINCT label_source, version FROM autolabels")
    assert label_rows == [("autolabel", VERSION)]


def test_grids_carry_vehicles_and_their_velocity(store: Path) -> None:
    cfg = AutolabelConfig(grid_every=10)
    autolabel(store, everything, config=cfg)
    st = Store(store)
    tables = [pq.read_table(st.path("drives", d, "autolabels.parquet")) for d in st.drive_ids()]
    rows = max(tables, key=lambda t: t.num_rows).to_pylist()
    gridded = [r for r in rows if r["grid"] is not None]
    assert [r["frame"] for r in gridded] == list(range(0, len(rows), 10))
    spec = cfg.spec()
    r = gridded[0]
    assert (r["grid_rows"], r["grid_cols"], r["grid_forward_m"]) == (spec.rows, spec.cols, 80.0)
    grids = np.stack([np.frombuffer(g["grid"], np.uint8) for g in gridded])
    flows = np.stack([np.frombuffer(g["flow"], np.int8).reshape(-1, 2) for g in gridded])
    vehicle = grids == VEHICLE
    assert vehicle.any()
    assert not flows[grids == 0].any(), "free road has no velocity"
    # traffic moves relative to the ego somewhere, and no relative speed is beyond the world's
    assert np.abs(flows[vehicle]).max() > 0
    assert np.abs(flows.astype(float) * FLOW_STEP_MPS).max() < 40.0


def test_labels_match_the_stored_telemetry_where_both_measure(store: Path) -> None:
    autolabel(store, everything)
    _, rows = query(
        store,
        "SELECT a.lead_gap_m, t.gap_m FROM autolabels a JOIN telemetry t USING (drive_id, t_s) "
        "WHERE t.gap_m IS NOT NULL AND a.lead_gap_m < 1000",
    )
    gaps = np.array(rows, dtype=float)
    # the world's own leader and the labeler's see the same traffic except where hindsight or a
    # signalled change makes them differ; most frames agree to the millimetre
    agree = np.isclose(gaps[:, 0], gaps[:, 1], atol=1e-2)
    assert agree.mean() > 0.8


def test_the_labels_do_not_depend_on_the_number_of_workers(store: Path, tmp_path: Path) -> None:
    import shutil

    other = tmp_path / "other"
    shutil.copytree(store, other)
    one = autolabel(store, everything, workers=1).as_dict()
    two = autolabel(other, everything, workers=2).as_dict()
    assert {k: v for k, v in one.items() if k not in ("store", "wall_s", "frames_per_s")} == {
        k: v for k, v in two.items() if k not in ("store", "wall_s", "frames_per_s")
    }
    assert tree_digest(store) == tree_digest(other)


def test_running_again_changes_nothing(store: Path) -> None:
    first = autolabel(store, everything)
    before = tree_digest(store)
    again = autolabel(store, everything).as_dict()
    assert again["drives_already"] == first.drives and again["drives_labelled"] == 0
    assert again["frames"] == first.frames
    assert tree_digest(store) == before


def test_a_log_without_a_scene_is_labelled_with_what_it_has(tmp_path: Path) -> None:
    root = tmp_path / "store"
    ingest([FIXTURE], root, workers=1)
    out = autolabel(root, everything).as_dict()
    assert out["drives_partial"] and "no scene channel" in out["drives_partial"][0]["reason"]
    assert out["frames"] > 0 and out["frames_labelled"] == 0
    _, rows = query(root, "SELECT count(*), count(accel_mps2), count(lane_shift) FROM autolabels")
    frames, accels, lanes = rows[0]
    assert frames == out["frames"] and accels == 0 and lanes == 0  # never a guessed action


def test_cli_json_keys(store: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "dojo.cli", "autolabel", str(store), "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    for key in (
        "frames",
        "frames_labelled",
        "frames_network_driven",
        "frames_network_driven_labelled",
    ):
        assert isinstance(out[key], int)


def test_killed_half_way_nothing_stored_changes(store: Path) -> None:
    st = Store(store)
    before = tree_digest(store)
    child = subprocess.Popen(
        [sys.executable, "-m", "dojo.cli", "autolabel", str(store), "--grid-every", "1"]
        + ["--workers", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120

    def labelled() -> list[str]:
        return [d for d in st.drive_ids() if os.path.exists(st.path("drives", d, FILE))]

    while not labelled() and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.005)
    child.send_signal(signal.SIGKILL)
    child.wait()
    # the kill landed half-way: the run had not ended, and some drive is still unlabelled
    assert child.returncode == -signal.SIGKILL
    labelled_at_kill = labelled()
    assert 0 < len(labelled_at_kill) < len(st.drive_ids())
    after = tree_digest(store)
    for path, digest in before.items():
        if "/tmp/" not in path:
            assert after.get(path) == digest, f"{path} changed"
    for d in labelled():  # a drive is labelled whole or not at all
        table = pq.read_table(st.path("drives", d, FILE))
        steps = pq.read_metadata(st.path("drives", d, "telemetry.parquet")).num_rows
        assert table.num_rows == steps and set(LABEL_FIELDS) <= set(table.column_names)
    done = autolabel(store, everything).as_dict()
    assert done["drives_already"] == len(labelled_at_kill) and done["drives_labelled"] > 0
    assert done["drives_labelled"] + done["drives_already"] == done["drives"]


def test_a_dataset_labels_only_its_drives(store: Path) -> None:
    from dojo.data.datasets import save_dataset
    from tests.data.test_datasets import RECIPE

    st = Store(store)
    _, clips = query(
        store, "SELECT clip_id, drive_id, t0_s, t1_s, frames, content_hash, family FROM clips"
    )
    first = clips[0]
    entry = dict(
        zip(
            ("clip_id", "drive_id", "t0_s", "t1_s", "frames", "content_hash", "family"),
            first,
            strict=True,
        )
    )
    entry |= {
        "seconds": entry["t1_s"] - entry["t0_s"],
        "triggers": ["normal"],
        "label_source": "human",
    }
    save_dataset(store, "one", [entry], recipe=RECIPE)
    out = autolabel(store, everything, dataset="one").as_dict()
    assert out["drives"] == 1 and out["drives_labelled"] == 1
    labelled = [d for d in st.drive_ids() if os.path.exists(st.path("drives", d, FILE))]
    assert labelled == [entry["drive_id"]]
