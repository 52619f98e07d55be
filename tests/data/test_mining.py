"""Triggers and mining: closed-form answers on hand-made clip stores, user trigger files, and a
real fleet drive ingested and mined end to end."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dojo.data.catalog import connect
from dojo.data.datasets import format_saved, load_dataset
from dojo.data.mine import mine, mine_entries, parse_window
from dojo.data.store import TABLE_FILES, TABLES
from dojo.data.triggers import (
    BUILTIN,
    Trigger,
    check,
    list_triggers,
    load_user_triggers,
    parse_params,
    registry,
    run_trigger,
)
from dojo.errors import DojoConfigError

Row = dict[str, Any]


# ------------------------------------------------------------------ hand-made clip stores
def _times(t0: float, t1: float, hz: float = 10.0) -> list[float]:
    """t0, t0 + 1/hz, ... t1 (inclusive), rounded as a 10 Hz log's times are."""
    return [round(t0 + k / hz, 6) for k in range(int(round((t1 - t0) * hz)) + 1)]


def write_drive(
    root: Path,
    drive_id: str,
    *,
    duration_s: float = 60.0,
    family: str = "highway",
    clips: Iterable[tuple[float, float]] = ((0.0, 59.9),),
    events: Iterable[tuple[float, str, bool]] = (),
    telemetry: Callable[[float], Row] | None = None,
    cameras: tuple[str, ...] = ("front", "left"),
) -> None:
    """One drive folder with the store's exact schemas: 10 Hz telemetry over ``[0, duration_s)``,
    camera frames only inside ``clips`` (``(t0_s, t1_s)`` of first and last frame), ``events``
    as ``(t_s, kind, critical)``; ``telemetry(t)`` overrides the default row fields at ``t``."""
    folder = root / "drives" / drive_id
    folder.mkdir(parents=True)
    tables: dict[str, list[Row]] = {name: [] for name in TABLES}
    tables["drives"].append(
        {
            "drive_id": drive_id,
            "family": family,
            "fps": 10.0,
            "cameras": list(cameras),
            "mode": "autonomous",
            "car_id": "car-000",
            "logging": "triggers",
            "duration_s": duration_s,
            "status": "complete",
        }
    )
    frame = 0
    for i, (c0, c1) in enumerate(clips):
        clip_id = f"{drive_id}c{i}"
        ts = _times(c0, c1)
        tables["clips"].append(
            {
                "clip_id": clip_id,
                "drive_id": drive_id,
                "start_frame": frame,
                "end_frame": frame + len(ts),
                "t0_s": ts[0],
                "t1_s": ts[-1],
                "frames": len(ts),
                "content_hash": hashlib.sha256(clip_id.encode()).hexdigest(),
                "family": family,
            }
        )
        for t in ts:
            for cam in cameras:
                tables["frames"].append(
                    {
                        "drive_id": drive_id,
                        "clip_id": clip_id,
                        "frame": frame,
                        "t_s": t,
                        "camera": cam,
                        "keyframe": False,
                    }
                )
            frame += 1
    for t in _times(0.0, duration_s - 0.1):
        row: Row = {
            "drive_id": drive_id,
            "t_s": t,
            "speed_mps": 20.0,
            "accel_mps2": 0.0,
            "steer_rad": 0.0,
            "lane": 1,
            "ttc_s": None,
            "gap_m": 60.0,
            "leader": 3,
            "command": 0,
            "driver": "network",
        }
        row.update(telemetry(t) if telemetry else {})
        tables["telemetry"].append(row)
    for t, kind, critical in events:
        tables["events"].append(
            {"drive_id": drive_id, "t_s": t, "kind": kind, "critical": critical, "reason": "test"}
        )
    for name, rows in tables.items():
        pq.write_table(pa.Table.from_pylist(rows, schema=TABLES[name]), folder / TABLE_FILES[name])


def new_store(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "store.json").write_text(json.dumps({"format": "dojo-clip-store", "version": 1}))
    for sub in ("drives", "quarantine", "tmp", "datasets"):
        (root / sub).mkdir(exist_ok=True)
    return root


def _between(t: float, a: float, b: float) -> bool:
    return a - 1e-9 <= t <= b + 1e-9


# Drive A: clips 0-9.9, 10-19.9, 30-39.9, 40-59.9 (no video 20-29.9); the safety driver drives
# 11.0-14.0. Moments: critical takeover 11.0, collision 25.0 (no video), near-miss events 32.0
# (ignored: near_miss comes from telemetry), a telemetry near miss at 32.0, a takeover at 33.0.
def _drive_a(t: float) -> Row:
    row: Row = {}
    if _between(t, 11.0, 14.0):
        row["driver"] = "safety_driver"
    if _between(t, 32.0, 32.4):
        row["ttc_s"] = 1.2
    return row


@pytest.fixture(scope="module")
def store_a(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = new_store(tmp_path_factory.mktemp("a") / "store")
    write_drive(
        root,
        "drive_a",
        family="stalled",
        clips=((0.0, 9.9), (10.0, 19.9), (30.0, 39.9), (40.0, 59.9)),
        events=(
            (11.0, "intervention_start", True),
            (14.5, "intervention_end", False),
            (25.0, "collision", True),
            (32.0, "near_miss", False),
            (33.0, "intervention_start", True),
        ),
        telemetry=_drive_a,
    )
    return root


# ------------------------------------------------------------------------ built-in triggers
def test_every_builtin_trigger_is_a_valid_select_with_drive_id_and_t_s() -> None:
    names = {t.name for t in list_triggers()}
    assert names == {
        "critical_intervention",
        "noncritical_intervention",
        "shadow_disagreement",
        "near_miss",
        "hard_brake",
        "cut_in",
        "collision",
    }
    for t in BUILTIN.values():
        check(t)
    assert BUILTIN["near_miss"].params == {"ttc_s": 1.5}
    assert BUILTIN["hard_brake"].params == {"accel_mps2": -4.0}
    assert BUILTIN["cut_in"].params == {"drop_m": 5.0}


def _telemetry_store(
    tmp_path: Path,
    telemetry: Callable[[float], Row],
    events: Iterable[tuple[float, str, bool]] = (),
) -> Any:
    root = new_store(tmp_path / "store")
    write_drive(root, "d1", duration_s=40.0, clips=(), telemetry=telemetry, events=events)
    write_drive(root, "d2", duration_s=10.0, clips=())  # quiet: never matches
    return connect(root)


def test_near_miss_finds_the_first_step_under_the_threshold_once_per_episode(
    tmp_path: Path,
) -> None:
    def ttc(t: float) -> Row:
        if _between(t, 11.5, 12.2):
            return {"ttc_s": 2.0}
        if _between(t, 12.3, 12.7):
            return {"ttc_s": 1.2}
        if _between(t, 30.0, 30.2):
            return {"ttc_s": 1.4}
        return {"ttc_s": 9.0} if t > 35.0 else {}  # far away and nothing closing

    con = _telemetry_store(tmp_path, ttc)
    assert run_trigger(con, "near_miss") == [("d1", 12.3), ("d1", 30.0)]
    assert run_trigger(con, "near_miss", ttc_s=1.3) == [("d1", 12.3)]
    assert run_trigger(con, "near_miss", ttc_s=1.0) == []
    assert run_trigger(con, "near_miss", ttc_s="2.5") == [
        ("d1", 11.5),
        ("d1", 30.0),
    ]  # one episode 11.5-12.7


def test_hard_brake_takes_its_threshold_from_the_parameter(tmp_path: Path) -> None:
    def accel(t: float) -> Row:
        if _between(t, 20.0, 20.5):
            return {"accel_mps2": -5.0}
        if _between(t, 20.6, 21.0):
            return {"accel_mps2": -3.0}
        return {}

    con = _telemetry_store(tmp_path, accel)
    assert run_trigger(con, "hard_brake") == [("d1", 20.0)]
    assert run_trigger(con, "hard_brake", accel_mps2=-2.0) == [
        ("d1", 20.0)
    ]  # 20.0-21.0 is one episode
    assert run_trigger(con, "hard_brake", accel_mps2=-6.0) == []


def test_cut_in_is_a_much_closer_new_leader_in_the_same_lane(tmp_path: Path) -> None:
    def scene(t: float) -> Row:
        if t < 12.3:
            return {"leader": 3, "gap_m": 40.0}
        if t < 15.0:  # 12.3: vehicle 7 cuts in 28 m closer, the ego keeps lane 1
            return {"leader": 7, "gap_m": 12.0}
        if t < 18.0:  # 15.0: 7 leaves, the ego follows 3 again (the gap grows: no cut-in)
            return {"leader": 3, "gap_m": 30.0}
        if t < 21.0:  # 18.0: vehicle 8 enters 3 m closer (below drop_m)
            return {"leader": 8, "gap_m": 27.0}
        if t < 24.0:  # 21.0: the ego changes lane and finds a close leader there (no cut-in)
            return {"leader": 9, "gap_m": 8.0, "lane": 2}
        if t < 27.0:  # 24.0: the lane is empty ahead
            return {"leader": -1, "gap_m": None, "lane": 2}
        return {"leader": 5, "gap_m": 15.0, "lane": 2}  # 27.0: a car cuts into the empty lane

    con = _telemetry_store(tmp_path, scene)
    assert run_trigger(con, "cut_in") == [("d1", 12.3), ("d1", 27.0)]
    assert run_trigger(con, "cut_in", drop_m=2.0) == [("d1", 12.3), ("d1", 18.0), ("d1", 27.0)]
    assert run_trigger(con, "cut_in", drop_m=30.0) == [("d1", 27.0)]


def test_event_triggers_tell_critical_from_noncritical(tmp_path: Path) -> None:
    events = [
        (5.0, "intervention_start", False),
        (6.0, "intervention_start", True),
        (9.0, "intervention_end", False),
        (12.0, "shadow_disagreement", False),
        (15.0, "collision", True),
        (16.0, "near_miss", False),
    ]
    con = _telemetry_store(tmp_path, lambda t: {}, events)
    assert run_trigger(con, "critical_intervention") == [("d1", 6.0)]
    assert run_trigger(con, "noncritical_intervention") == [("d1", 5.0)]
    assert run_trigger(con, "shadow_disagreement") == [("d1", 12.0)]
    assert run_trigger(con, "collision") == [("d1", 15.0)]
    assert run_trigger(con, "near_miss") == []  # the fleet's own near_miss events are not read


def test_bad_trigger_parameters_are_named(tmp_path: Path) -> None:
    con = _telemetry_store(tmp_path, lambda t: {})
    with pytest.raises(DojoConfigError, match="ttc_s='soon'"):
        run_trigger(con, "near_miss", ttc_s="soon")
    with pytest.raises(DojoConfigError, match="no parameter 'ttc'.*ttc_s"):
        run_trigger(con, "near_miss", ttc=1.0)
    with pytest.raises(DojoConfigError, match="finite"):
        run_trigger(con, "near_miss", ttc_s=float("nan"))
    with pytest.raises(DojoConfigError, match="Unknown trigger 'nope'.*cut_in"):
        run_trigger(con, "nope")
    assert parse_params(["near_miss.ttc_s=1.0", "cut_in.drop_m = 3"]) == {
        "near_miss": {"ttc_s": "1.0"},
        "cut_in": {"drop_m": "3"},
    }
    with pytest.raises(DojoConfigError, match="'ttc_s=1'"):
        parse_params(["ttc_s=1"])


# ---------------------------------------------------------------------- user trigger files
def _file(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "triggers.toml"
    p.write_text(text)
    return p


def test_user_triggers_run_with_prepared_parameters(tmp_path: Path) -> None:
    con = _telemetry_store(
        tmp_path,
        lambda t: {"speed_mps": 2.0} if _between(t, 3.0, 3.3) else {},
        [(4.0, "shadow_disagreement", False)],
    )
    path = _file(
        tmp_path,
        '''
[triggers.crawl]
description = "too slow"
sql = """
SELECT drive_id, min(t_s) AS t_s, 'extra' AS note FROM telemetry
WHERE speed_mps < $v_mps GROUP BY drive_id -- a trailing comment
"""
params = { v_mps = 5.0 }

[triggers.by_reason]
sql = "SELECT drive_id, t_s FROM events WHERE reason = $why;"
params = { why = "test" }
''',
    )
    user = load_user_triggers(path)
    assert set(user) == {"crawl", "by_reason"} and not user["crawl"].builtin
    assert run_trigger(con, user["crawl"]) == [("d1", 3.0)]
    assert run_trigger(con, user["crawl"], v_mps=1.0) == []
    assert run_trigger(con, user["by_reason"]) == [("d1", 4.0)]
    # a hostile value stays a value: no row has this reason, and nothing else runs
    assert run_trigger(con, user["by_reason"], why="x' OR '1'='1") == []
    assert {t.name for t in list_triggers(path)} == set(BUILTIN) | {"crawl", "by_reason"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[triggers."bad-name"]\nsql = "SELECT drive_id, t_s FROM events"',
            "'bad-name' must be an identifier",
        ),
        ('[triggers.normal]\nsql = "SELECT drive_id, t_s FROM events"', "reserved"),
        ('[triggers.x]\nsql = "DELETE FROM events"', "DELETE statement"),
        ("[triggers.x]\nsql = \"COPY events TO '/tmp/x.csv'\"", "COPY statement"),
        ('[triggers.x]\nsql = "SELECT drive_id, t_s FROM events; SELECT 1"', "2 SQL statements"),
        ('[triggers.x]\nsql = "SELECT drive_id FROM events"', "missing: t_s"),
        (
            '[triggers.x]\nsql = "SELECT drive_id, t_s FROM events WHERE nope > 1"',
            "fails on the catalog",
        ),
        ('[triggers.x]\nsql = "SELEC drive_id"', "does not parse"),
        (
            '[triggers.x]\nsql = "SELECT drive_id, t_s FROM events WHERE t_s > $after"',
            r"reads \$after",
        ),
        (
            '[triggers.x]\nsql = "SELECT drive_id, t_s FROM events"\nparams = { a = [1] }',
            "parameter a=\\[1\\]",
        ),
        (
            '[triggers.x]\nsql = "SELECT drive_id, t_s FROM events"\nwhere = 1',
            "unknown keys \\['where'\\]",
        ),
        ('[triggers.x]\nsql = ""', "sql=''"),
        (
            '[triggers.cut_in]\nsql = "SELECT drive_id, t_s FROM events"',
            "clashes with the built-in",
        ),
        ("[other]\nx = 1", "must hold \\[triggers.NAME\\]"),
        ("[triggers.x\n", "not valid TOML"),
    ],
)
def test_bad_user_trigger_files_are_refused_with_the_reason(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(DojoConfigError, match=message):
        load_user_triggers(_file(tmp_path, text))


def test_a_user_trigger_may_override_a_builtin_only_when_it_says_so(tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        "[triggers.collision]\noverride = true\nsql = \"SELECT drive_id, t_s + 1 AS t_s FROM events WHERE kind = 'collision'\"",
    )
    con = _telemetry_store(tmp_path, lambda t: {}, [(15.0, "collision", True)])
    assert run_trigger(con, registry(path)["collision"]) == [("d1", 16.0)]
    assert run_trigger(con, "collision") == [("d1", 15.0)]
    with pytest.raises(DojoConfigError, match="cannot be read"):
        load_user_triggers(tmp_path / "missing.toml")
    with pytest.raises(DojoConfigError, match="'bad-name'"):
        check(Trigger("bad-name", "SELECT 1"))


# --------------------------------------------------------------------------- windows
def test_parse_window_reads_before_and_after() -> None:
    assert parse_window("-5s:+2s") == (-5.0, 2.0)
    assert parse_window(" -2.5 : 3 ") == (-2.5, 3.0)
    assert parse_window("0s:1.5s") == (0.0, 1.5)
    assert parse_window((-1, 1)) == (-1.0, 1.0)
    for bad in ("5s", "-5s:+2m", "a:b", "", "-5s:+2s:+3s"):
        with pytest.raises(DojoConfigError, match="BEFORE:AFTER"):
            parse_window(bad)
    for bad in ("+2s:-5s", "1s:1s"):
        with pytest.raises(DojoConfigError, match=re.escape(f"window='{bad}' ends at or before")):
            parse_window(bad)


# ----------------------------------------------------------------------------- mining
def test_windows_are_cut_by_clips_merged_and_dropped_without_video(store_a: Path) -> None:
    m = mine_entries(store_a, "critical_intervention,collision,near_miss", sample_normal=0.0)
    assert m.moments == {"critical_intervention": 2, "collision": 1, "near_miss": 1}
    assert m.dropped_no_video == {
        "critical_intervention": 0,
        "collision": 1,
        "near_miss": 0,
    }  # 25 s: no video
    got = [
        (e["clip_id"], e["t0_s"], e["t1_s"], e["frames"], e["triggers"], e["label_source"])
        for e in m.entries
    ]
    assert got == [
        # the takeover at 11.0: [6.0, 13.0] spans the clip boundary at 10.0; mostly the network in
        # the first piece, mostly the safety driver (11.0-13.0 of 10.0-13.0) in the second
        ("drive_ac0", 6.0, 9.9, 40, ["critical_intervention"], "network"),
        ("drive_ac1", 10.0, 13.0, 31, ["critical_intervention"], "safety_driver"),
        # near miss 32.0 -> [27, 34] and takeover 33.0 -> [28, 35], cut to the clip from 30.0, merged
        ("drive_ac2", 30.0, 35.0, 51, ["critical_intervention", "near_miss"], "network"),
    ]
    e = m.entries[1]
    assert e["drivers"] == {"network": 10, "safety_driver": 21}
    assert (
        e["content_hash"] == hashlib.sha256(b"drive_ac1").hexdigest() and e["family"] == "stalled"
    )
    assert e["seconds"] == pytest.approx(3.1) and e["drive_id"] == "drive_a"
    shorter = mine_entries(store_a, ["critical_intervention"], window="-1s:+1s", sample_normal=0.0)
    assert [(e["t0_s"], e["t1_s"]) for e in shorter.entries] == [(10.0, 12.0), (32.0, 34.0)]


def test_normal_driving_is_sampled_from_slots_no_trigger_window_touches(store_a: Path) -> None:
    # window 7 s: slots [0,7) [7,14) ...; trigger windows [6,13] [20,27] [27,34] [28,35] touch
    # slots 0-5; slots 6, 7, 8 (42-63 s) have video from the clip 40-59.9
    m = mine_entries(
        store_a, ["critical_intervention", "collision", "near_miss"], sample_normal=1.0
    )
    normal = [(e["t0_s"], e["t1_s"], e["frames"]) for e in m.entries if e["triggers"] == ["normal"]]
    assert normal == [(42.0, 48.9, 70), (49.0, 55.9, 70), (56.0, 59.9, 40)]
    assert m.normal_slots == {"candidates": 3, "kept": 3}
    none = mine_entries(store_a, ["critical_intervention"], sample_normal=0.0)
    assert all(e["triggers"] != ["normal"] for e in none.entries)


def test_sample_normal_is_a_seeded_share_that_does_not_move_when_drives_are_added(
    tmp_path: Path,
) -> None:
    root = new_store(tmp_path / "store")
    write_drive(
        root, "long", duration_s=1000.0, clips=((0.0, 999.9),), events=((500.0, "collision", True),)
    )
    m = mine_entries(root, ["collision"], window="-1s:+1s", sample_normal=0.3, seed=4)
    normal = [e for e in m.entries if e["triggers"] == ["normal"]]
    assert m.normal_slots["candidates"] == 500 - 2  # 2 s slots; the collision's window touches two
    assert 0.2 < len(normal) / 498 < 0.4
    assert all(e["t1_s"] < 499.0 or e["t0_s"] > 501.0 for e in normal)
    again = mine_entries(root, ["collision"], window="-1s:+1s", sample_normal=0.3, seed=4)
    assert again.entries == m.entries
    other_seed = mine_entries(root, ["collision"], window="-1s:+1s", sample_normal=0.3, seed=5)
    assert other_seed.entries != m.entries
    write_drive(root, "another", duration_s=100.0, clips=((0.0, 99.9),))
    grown = mine_entries(root, ["collision"], window="-1s:+1s", sample_normal=0.3, seed=4)
    assert [e for e in grown.entries if e["drive_id"] == "long"] == m.entries


def test_mine_refuses_bad_requests_before_doing_any_work(store_a: Path) -> None:
    with pytest.raises(
        DojoConfigError, match="Unknown trigger 'near_mis'; known triggers: .*near_miss"
    ):
        mine(store_a, ["near_mis"], out="x")
    with pytest.raises(DojoConfigError, match="sample_normal=1.5"):
        mine(store_a, ["collision"], sample_normal=1.5, out="x")
    with pytest.raises(DojoConfigError, match="val_share=1.0"):
        mine(store_a, ["collision"], val_share=1.0, out="x")
    with pytest.raises(DojoConfigError, match="'cut_in', which is not mined"):
        mine(store_a, ["collision"], params={"cut_in": {"drop_m": 1.0}}, out="x")
    with pytest.raises(DojoConfigError, match="Dataset name '../x'"):
        mine(store_a, ["collision"], out="../x")
    with pytest.raises(DojoConfigError, match="names no trigger"):
        mine(store_a, [], out="x")
    assert not list((store_a / "datasets").iterdir())


def test_mine_writes_a_dataset_and_is_idempotent(tmp_path: Path, store_a: Path) -> None:
    root = tmp_path / "store"
    import shutil

    shutil.copytree(store_a, root)
    v1 = mine(root, ["critical_intervention", "near_miss"], sample_normal=1.0, out="hard")
    assert (v1.version, v1.created) == (1, True)
    again = mine(root, ["critical_intervention", "near_miss"], sample_normal=1.0, out="hard")
    assert (again.version, again.created, again.content_hash) == (1, False, v1.content_hash)
    v2 = mine(
        root,
        ["critical_intervention", "near_miss"],
        sample_normal=1.0,
        out="hard",
        params={"near_miss": {"ttc_s": "1.0"}},
    )
    assert (v2.version, v2.created) == (2, True)
    ds = load_dataset(root, "hard@v2")
    assert ds.manifest["recipe"]["params"] == {
        "critical_intervention": {},
        "near_miss": {"ttc_s": 1.0},
    }
    assert "near_miss.ttc_s=1.0" in ds.manifest["recipe"]["command"]
    assert ds.manifest["mining"]["moments"] == {"critical_intervention": 2, "near_miss": 0}
    assert "ttc_s < $ttc_s" in ds.manifest["recipe"]["sql"]["near_miss"]
    collide = mine(root, ["collision"], sample_normal=0.0, out="crashes")
    assert (collide.moments, collide.dropped_no_video) == ({"collision": 1}, {"collision": 1})
    report = format_saved(collide)
    assert (
        "crashes@v1 (new version): 0 windows" in report
        and "1 moments had no camera frames" in report
    )
    assert "unchanged" in format_saved(mine(root, ["collision"], sample_normal=0.0, out="crashes"))
    assert {e["split"] for e in ds.entries} <= {"train", "val"}


# ---------------------------------------------------------------- end to end: a real fleet
@pytest.fixture(scope="module")
def fleet_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dojo.data.ingest import ingest
    from dojo.fleet.config import DriveConfig
    from dojo.fleet.drive import drive

    tmp = tmp_path_factory.mktemp("fleet")
    drive(
        DriveConfig(
            out=str(tmp / "logs"),
            cars=2,
            minutes=0.3,
            mode="autonomous",
            policy="naive",
            families=("stalled", "cut_in"),
            drive_s=18.0,
        )
    )
    ingest([tmp / "logs"], tmp / "store", workers=1)
    return tmp / "store"


def test_a_fleet_drive_mined_end_to_end_matches_the_store(fleet_store: Path) -> None:
    v = mine(fleet_store, "critical_intervention,near_miss", sample_normal=0.5, out="e2e")
    ds = load_dataset(fleet_store, "e2e")
    assert ds.version == v.version == 1 and len(ds.entries) == v.entries
    con = connect(fleet_store)
    critical = con.sql(
        "SELECT drive_id, t_s FROM events WHERE kind = 'intervention_start' AND critical"
    ).fetchall()
    assert critical, "the naive policy in stalled traffic should need the safety driver"
    clips = {
        c: (d, h)
        for c, d, h in con.sql("SELECT clip_id, drive_id, content_hash FROM clips").fetchall()
    }
    frames = con.sql("SELECT DISTINCT clip_id, t_s FROM frames").fetchall()
    mining = ds.manifest["mining"]
    assert mining["moments"]["critical_intervention"] == len(critical)
    # full logs: every takeover has a window holding it, from 5 s before or earlier (or the drive's start)
    for d, t in critical:
        around = [
            e
            for e in ds.entries
            if e["drive_id"] == d
            and "critical_intervention" in e["triggers"]
            and e["t0_s"] - 1e-6 <= t <= e["t1_s"] + 1e-6
        ]
        assert len(around) == 1, (d, t)
        assert around[0]["t0_s"] <= max(t - 5.0, 0.0) + 0.051  # merged windows may start earlier
        assert around[0]["drivers"].get("safety_driver", 0) > 0  # it took over inside the window
    # near misses from telemetry at 1.5 s, computed here independently of the trigger's SQL
    tele = con.sql("SELECT drive_id, t_s, ttc_s FROM telemetry ORDER BY drive_id, t_s").fetchall()
    near = [
        (d, t)
        for i, (d, t, ttc) in enumerate(tele)
        if ttc is not None
        and ttc < 1.5
        and not (i and tele[i - 1][0] == d and tele[i - 1][2] is not None and tele[i - 1][2] < 1.5)
    ]
    assert mining["moments"]["near_miss"] == len(near)
    frame_times = {(clips[c][0], t) for c, t in frames}
    no_video = 0
    for d, t in near:
        if not any(dd == d and t - 5.0 - 1e-6 <= ft <= t + 2.0 + 1e-6 for dd, ft in frame_times):
            no_video += 1
            continue
        assert any(
            e["drive_id"] == d
            and "near_miss" in e["triggers"]
            and e["t0_s"] <= t + 2.0 + 1e-6
            and e["t1_s"] >= t - 5.0 - 1e-6
            for e in ds.entries
        ), (d, t)
    assert mining["dropped_no_video"] == {"critical_intervention": 0, "near_miss": no_video}
    by_clip_frames: dict[str, list[float]] = {}
    for c, t in frames:
        by_clip_frames.setdefault(c, []).append(t)
    for e in ds.entries:
        drive_id, content_hash = clips[e["clip_id"]]
        assert (e["drive_id"], e["content_hash"]) == (drive_id, content_hash)
        inside = [
            t for t in by_clip_frames[e["clip_id"]] if e["t0_s"] - 1e-6 <= t <= e["t1_s"] + 1e-6
        ]
        assert len(inside) == e["frames"] > 0
        assert e["label_source"] in ("network", "safety_driver")
    splits: dict[str, set[str]] = {}
    for e in ds.entries:
        splits.setdefault(e["drive_id"], set()).add(e["split"])
    assert all(len(s) == 1 for s in splits.values())
    assert mining["normal_slots"]["candidates"] > 0  # the cut-in drives had nothing to trigger
    triggered = [e for e in ds.entries if e["triggers"] != ["normal"]]
    for e in ds.entries:
        if e["triggers"] == ["normal"]:  # normal windows never overlap a trigger window's moments
            assert not any(
                o["drive_id"] == e["drive_id"] and o["t0_s"] <= e["t1_s"] and e["t0_s"] <= o["t1_s"]
                for o in triggered
            )
