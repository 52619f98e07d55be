"""Ingest: real fleet logs into a real clip store; bad files quarantined, nothing stored lost."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from dojo.data.catalog import connect, query
from dojo.data.ingest import ingest
from dojo.data.store import Store
from dojo.drivelog import decode_access_units, decode_video, read_drive_log, read_occupancy
from dojo.drivelog.telemetry import NOT_LOGGED_LANE
from dojo.errors import DojoConfigError
from dojo.fleet.config import DriveConfig
from dojo.fleet.drive import Fleet
from tests.drivelog.rewrite import rewrite

DOJO = [sys.executable, "-m", "dojo.cli"]


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real drive logs: 2 cars, mixed modes, full logging, 8 s drives (about 6 files)."""
    out = tmp_path_factory.mktemp("logs")
    config = DriveConfig(
        cars=2,
        minutes=0.35,
        mode="mixed",
        policy="naive",
        out=str(out),
        drive_s=8.0,
        families=("cut_in", "stalled", "highway"),
    )
    Fleet(config).run()
    return out


@pytest.fixture(scope="module")
def trigger_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Trigger-only logs, whose camera frames come in windows with gaps between them."""
    out = tmp_path_factory.mktemp("trigger_logs")
    config = DriveConfig(
        cars=2,
        minutes=0.5,
        mode="autonomous",
        policy="naive",
        out=str(out),
        drive_s=30.0,
        families=("stalled", "cut_in"),
        logging="triggers",
    )
    Fleet(config).run()
    return out


def tree_digest(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root/drives`` (what a stored clip is made of)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((root / "drives").rglob("*"))
        if p.is_file()
    }


def test_ingest_remuxes_every_frame_and_table_and_the_catalog_agrees(
    logs: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    files = sorted(logs.glob("*.mcap"))
    summary = ingest([logs], store).as_dict()
    assert summary["files_ingested"] == len(files) >= 4 and summary["files_quarantined"] == 0
    assert summary.keys() >= {
        "files_ingested",
        "files_quarantined",
        "quarantined",
        "frames",
        "clips",
    }
    st = Store(store)
    con = connect(st)
    total_frames = 0
    for f in files:
        log = read_drive_log(f)
        sha = hashlib.sha256(f.read_bytes()).hexdigest()
        drive_id = sha[:24]
        row = con.execute("SELECT frames FROM drives WHERE drive_id = ?", [drive_id]).fetchone()
        assert row is not None
        (n_frames,) = row
        assert n_frames == log.message_counts["/camera/front"]
        total_frames += n_frames * len(log.cameras)
        # the video is a remux: decoding the store's stream gives exactly the log's frames
        for cam in log.cameras:
            rows = con.execute(
                "SELECT byte_offset, byte_size FROM frames WHERE drive_id = ? AND camera = ? ORDER BY frame",
                [drive_id, cam],
            ).fetchall()
            data = (store / "drives" / drive_id / "video" / f"{cam}.h264").read_bytes()
            assert sum(size for _, size in rows) == len(data)
            units = [data[o : o + s] for o, s in rows]
            np.testing.assert_array_equal(
                decode_access_units(units, rgb=False), decode_video(f, cam)
            )
        # telemetry, events and labels: the same values, in time order
        tele = con.execute(
            "SELECT t_s, speed_mps, lane, command, driver FROM telemetry WHERE drive_id = ? ORDER BY t_s",
            [drive_id],
        ).fetchall()
        assert tele == [
            (r["t_s"], r["speed_mps"], r["lane"], r["command"], r["driver"]) for r in log.telemetry
        ]
        kinds = [
            k
            for (k,) in con.execute(
                "SELECT kind FROM events WHERE drive_id = ? ORDER BY t_s", [drive_id]
            ).fetchall()
        ]
        assert kinds == [e["kind"] for e in log.events]
        times, grids = read_occupancy(f)
        stored = con.execute(
            "SELECT t_s, grid FROM labels WHERE drive_id = ? ORDER BY t_s", [drive_id]
        ).fetchall()
        assert len(stored) == len(times)
        assert all(bytes(g) == grid.tobytes() for (_, g), grid in zip(stored, grids, strict=True))
    assert summary["frames"] == total_frames
    # clips tile each drive's frames, start on keyframes, and are at most 10 s long
    clips = con.execute(
        "SELECT drive_id, start_frame, end_frame, t1_s - t0_s FROM clips ORDER BY 1, 2"
    ).fetchall()
    assert len(clips) == summary["clips"]
    assert max(span for *_, span in clips) < 10.0
    starts = con.execute(
        "SELECT count(*) FROM frames f JOIN clips c ON f.clip_id = c.clip_id "
        "AND f.frame = c.start_frame WHERE NOT f.keyframe"
    ).fetchone()
    assert starts == (0,)


def test_trigger_only_logs_make_one_clip_per_window(trigger_logs: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    summary = ingest([trigger_logs], store)
    assert summary.files_ingested >= 2 and summary.files_quarantined == 0
    con = connect(store)
    gaps = con.execute("""
        SELECT count(*) FROM (
          SELECT clip_id, t_s - lag(t_s) OVER (PARTITION BY clip_id ORDER BY frame) AS dt
          FROM frames WHERE camera = 'front') WHERE dt > 0.15""").fetchone()
    assert gaps == (0,)  # no clip spans a gap in the frames
    counts = con.execute(
        "SELECT (SELECT count(*) FROM telemetry), (SELECT count(*) FROM frames WHERE camera = 'front')"
    ).fetchone()
    assert counts is not None
    tele, frames = counts
    assert frames < tele  # windows only, while telemetry covers every step


def test_ingest_is_idempotent_and_the_same_file_twice_is_one_drive(
    logs: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    one = sorted(logs.glob("*.mcap"))[0]
    copy = tmp_path / "copy.mcap"
    shutil.copy(one, copy)
    first = ingest([one, copy, one], store)
    assert (first.files_ingested, first.files_already) == (1, 1)  # the copy is the same content
    before = tree_digest(store)
    again = ingest([logs], store)
    assert again.files_already == 1 and again.files_ingested == len(list(logs.glob("*.mcap"))) - 1
    assert {k: v for k, v in tree_digest(store).items() if k in before} == before
    third = ingest([logs], store)
    assert third.files_ingested == 0 and third.files_already == len(list(logs.glob("*.mcap")))


def test_bad_files_are_quarantined_with_a_reason_and_stored_clips_stay(
    logs: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    good = sorted(logs.glob("*.mcap"))
    ingest(good[:2], store)
    before = tree_digest(store)
    n_clips = query(store, "SELECT count(*) FROM clips")[1][0][0]
    bad = tmp_path / "bad"
    bad.mkdir()
    data = good[2].read_bytes()
    (bad / "truncated.mcap").write_bytes(data[: len(data) // 2])
    (bad / "random.mcap").write_bytes(np.random.default_rng(0).bytes(5000))
    (bad / "empty.mcap").write_bytes(b"")
    rewrite(good[2], bad / "unknown_schema.mcap", extra_channel=True)
    rewrite(good[2], bad / "no_telemetry.mcap", drop=("/telemetry",))
    rewrite(good[2], bad / "bad_video.mcap", spoil_video_at=5)
    (bad / "writing.mcap.partial").write_bytes(data[:1000])
    summary = ingest([bad, good[3]], store).as_dict()
    reasons = {Path(q["file"]).name: q["reason"] for q in summary["quarantined"]}
    assert summary["files_ingested"] == 1 and summary["files_quarantined"] == 6
    assert "truncated" in reasons["truncated.mcap"]
    assert (
        "not an MCAP file" in reasons["random.mcap"] and "not an MCAP file" in reasons["empty.mcap"]
    )
    assert (
        "'/lidar'" in reasons["unknown_schema.mcap"]
        and "acme.LidarScan" in reasons["unknown_schema.mcap"]
    )
    assert "no /telemetry channel" in reasons["no_telemetry.mcap"]
    assert "camera 'front'" in reasons["bad_video.mcap"] and "decode" in reasons["bad_video.mcap"]
    assert summary["skipped"] == [
        {"file": str(bad / "writing.mcap.partial"), "reason": "still being written (.partial)"}
    ]
    assert {q["reason"] for q in Store(store).quarantined()} == set(reasons.values())
    # what was stored before is byte for byte the same, and the catalog still reads it
    assert {k: v for k, v in tree_digest(store).items() if k in before} == before
    assert query(store, "SELECT count(*) FROM clips")[1][0][0] > n_clips
    assert not list((store / "tmp").iterdir())


def test_an_empty_folder_a_missing_path_and_a_store_that_is_a_file(
    tmp_path: Path, logs: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    summary = ingest([empty], tmp_path / "store")
    assert summary.files_ingested == 0
    assert summary.skipped == [{"file": str(empty), "reason": "the folder holds no .mcap files"}]
    with pytest.raises(DojoConfigError, match="does not exist"):
        ingest([tmp_path / "nope"], tmp_path / "store")
    afile = tmp_path / "store.txt"
    afile.write_text("x")
    with pytest.raises(DojoConfigError, match="is a file, not a folder"):
        ingest([logs], afile)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(DojoConfigError, match="other files in it"):
        ingest([logs], other)
    with pytest.raises(DojoConfigError, match="not a Dojo clip store"):
        query(empty, "SELECT 1")
    with pytest.raises(DojoConfigError, match="workers=0"):
        ingest([logs], tmp_path / "store", workers=0)


def test_kill_9_mid_ingest_then_rerun_completes_the_store(logs: Path, tmp_path: Path) -> None:
    many = tmp_path / "many"
    many.mkdir()
    for f in sorted(logs.glob("*.mcap")):  # the same logs several times, each a distinct file
        for k in range(4):
            rewrite(f, many / f"{f.stem}-{k}.mcap", tag=str(k)) if k else shutil.copy(
                f, many / f.name
            )
    n = len(list(many.glob("*.mcap")))
    store = tmp_path / "store"
    proc = subprocess.Popen(
        [*DOJO, "ingest", str(many), "--store", str(store), "--workers", "1", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list((store / "drives").glob("*"))) < 2:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    done = len(list((store / "drives").glob("*")))
    assert 0 < done < n, "the kill should land mid-ingest"
    # every drive that made it in is whole and readable; the dead run's work folder is still there
    for (drive_id,) in connect(store).execute("SELECT drive_id FROM drives").fetchall():
        for table in ("clips", "frames", "telemetry", "labels"):
            assert pq.read_table(store / "drives" / drive_id / f"{table}.parquet").num_rows > 0
    summary = ingest([many], store)
    assert (summary.files_already, summary.files_ingested) == (done, n - done)  # nothing done twice
    assert len(list((store / "drives").glob("*"))) == n and not list((store / "tmp").iterdir())
    clean = tmp_path / "clean"
    ingest([many], clean)
    ids = "SELECT clip_id, content_hash FROM clips ORDER BY 1"
    assert query(store, ids) == query(clean, ids)


def test_a_store_on_another_fsspec_filesystem(logs: Path) -> None:
    """The same ingest and catalog through fsspec's in-memory filesystem (as for an object store)."""
    files = sorted(logs.glob("*.mcap"))[:2]
    summary = ingest(files, "memory://dojo-test-store", workers=2)
    assert summary.files_ingested == 2 and summary.workers == 1
    local = ingest(files, Path(str(logs) + "-local-store"))
    sql = "SELECT clip_id, frames, content_hash FROM clips ORDER BY 1"
    assert query("memory://dojo-test-store", sql) == query(Path(str(logs) + "-local-store"), sql)
    assert local.clips == summary.clips


def test_cli_ingest_and_query(logs: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    run = subprocess.run(
        [*DOJO, "ingest", str(logs), "--store", str(store), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["files_ingested"] == len(list(logs.glob("*.mcap"))) and out["quarantined"] == []
    sql = "SELECT family, count(*) AS clips FROM clips GROUP BY 1 ORDER BY 1"
    as_json = json.loads(
        subprocess.run(
            [*DOJO, "query", str(store), sql, "--json"], capture_output=True, text=True
        ).stdout
    )
    assert [r["family"] for r in as_json] == ["cut_in", "highway", "stalled"] and sum(
        r["clips"] for r in as_json
    ) == out["clips"]
    as_csv = subprocess.run(
        [*DOJO, "query", str(store), sql, "--csv"], capture_output=True, text=True
    ).stdout
    assert as_csv.splitlines()[0] == "family,clips" and len(as_csv.splitlines()) == 4
    table = subprocess.run(
        [*DOJO, "query", str(store), "SELECT grid FROM labels LIMIT 3"],
        capture_output=True,
        text=True,
    ).stdout
    assert "<9600 bytes>" in table and "(3 rows)" in table
    bad = subprocess.run(
        [*DOJO, "query", str(store), "SELECT nope FROM clips"], capture_output=True, text=True
    )
    assert (
        bad.returncode == 2
        and bad.stderr.startswith("dojo: error: The query failed:")
        and len(bad.stderr.splitlines()) == 1
    )
    partial = tmp_path / "x.mcap"
    partial.write_bytes(b"not an mcap")
    mixed = subprocess.run(
        [*DOJO, "ingest", str(partial), "--store", str(store)], capture_output=True, text=True
    )
    assert (
        mixed.returncode == 1
        and "quarantined" in mixed.stdout
        and "not an MCAP file" in mixed.stdout
    )


def test_cli_mine_and_datasets(logs: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    ingest([logs], store)
    mine = [
        *DOJO,
        "mine",
        str(store),
        "--trigger",
        "near_miss,cut_in",
        "--param",
        "near_miss.ttc_s=3.0",
        "--sample-normal",
        "0.5",
        "--out",
        "cases",
        "--json",
    ]
    first = subprocess.run(mine, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    made = json.loads(first.stdout)
    assert made["dataset"] == "cases@v1" and made["created"] and made["windows"] > 0
    again = json.loads(subprocess.run(mine, capture_output=True, text=True, timeout=120).stdout)
    assert (
        again["dataset"] == "cases@v1" and not again["created"]
    )  # the same windows: no new version
    listed = subprocess.run(
        [*DOJO, "datasets", "list", str(store)], capture_output=True, text=True
    ).stdout
    assert "cases@v1" in listed and made["content_hash"][:12] in listed
    card = subprocess.run(
        [*DOJO, "datasets", "show", str(store), "cases"], capture_output=True, text=True
    ).stdout
    assert card.startswith("# Dataset cases v1") and "near_miss.ttc_s=3.0" in card
    bad = subprocess.run(
        [*DOJO, "mine", str(store), "--trigger", "nope", "--out", "x"],
        capture_output=True,
        text=True,
    )
    assert (
        bad.returncode == 2 and "nope" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    )
    hostile = subprocess.run(
        [*DOJO, "datasets", "show", str(store), "../../etc"], capture_output=True, text=True
    )
    assert hostile.returncode == 2 and hostile.stderr.startswith("dojo: error:")


def test_a_log_written_before_the_drivelog_package_still_ingests(tmp_path: Path) -> None:
    """The 2026-12 fixture gives the tables ingest made from it when it was written."""
    fixture = Path(__file__).parents[1] / "fixtures" / "drivelog" / "v-2026-12.mcap"
    expected = json.loads(fixture.with_suffix(".expected.json").read_text())["ingest"]
    summary = ingest([fixture], tmp_path / "st", workers=1)
    assert summary.files_ingested == 1 and summary.quarantined == []
    assert (summary.clips, summary.frames, summary.video_bytes) == (
        expected["clips"],
        expected["frames"],
        expected["video_bytes"],
    )
    (drive,) = (tmp_path / "st" / "drives").iterdir()
    # telemetry fields added after the fixture was written read as their defaults
    later = {"target_lane": NOT_LOGGED_LANE, "v0_mps": None}
    for name in ("telemetry", "poses", "events", "clips", "frames"):
        rows = pq.read_table(drive / f"{name}.parquet").to_pylist()
        if name == "telemetry":
            assert rows and all(r[k] == v for r in rows for k, v in later.items())
            rows = [{k: v for k, v in r.items() if k not in later} for r in rows]
        want = expected["tables"][name]
        assert len(rows) == want["rows"] and (list(rows[0]) if rows else []) == want["columns"]
        text = json.dumps(rows, sort_keys=True, default=str).encode()
        assert hashlib.sha256(text).hexdigest() == want["sha256"], name
    first = pq.read_table(drive / "telemetry.parquet").to_pylist()[:2]
    assert [{k: v for k, v in r.items() if k not in later} for r in first] == expected["tables"][
        "telemetry_first"
    ]
