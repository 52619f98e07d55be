"""`dojo drive` as a user runs it: JSON summary, Ctrl-C mid-drive, a disk that fills up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dojo.drivelog import read_drive_log
from tests.fleet.tmpfs import small_tmpfs

DOJO = [sys.executable, "-m", "dojo.cli"]


def test_drive_prints_a_json_summary_with_the_documented_keys(tmp_path: Path) -> None:
    run = subprocess.run(
        [
            *DOJO,
            "drive",
            "--cars",
            "2",
            "--minutes",
            "0.1",
            "--mode",
            "autonomous",
            "--policy",
            "naive",
            "--scenarios",
            "stalled",
            "--seed",
            "7",
            "--out",
            str(tmp_path / "logs"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    for key in (
        "cars",
        "decisions",
        "miles",
        "critical_interventions",
        "noncritical_interventions",
        "collisions",
        "files",
    ):
        assert key in out
    assert out["cars"] == 2 and out["decisions"] == 120
    assert sorted(out["files"]) == sorted(str(p) for p in (tmp_path / "logs").glob("*.mcap"))
    assert all(read_drive_log(f).config["seed"] in ("7", "8") for f in out["files"])


def test_bad_arguments_exit_2_with_one_line(tmp_path: Path) -> None:
    run = subprocess.run(
        [*DOJO, "drive", "--cars", "2", "--mode", "robot", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert (
        run.stderr.strip().splitlines()[-1]
        == "dojo: error: mode='robot' must be one of manual, shadow, autonomous, mixed."
    )


def test_ctrl_c_mid_drive_leaves_every_log_valid_and_indexed(tmp_path: Path) -> None:
    out = tmp_path / "logs"
    proc = subprocess.Popen(
        [
            *DOJO,
            "drive",
            "--cars",
            "3",
            "--minutes",
            "5",
            "--mode",
            "shadow",
            "--drive-seconds",
            "10",
            "--out",
            str(out),
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while len(list(out.glob("*.mcap"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)  # wait until the first drives have finished ...
    time.sleep(0.3)  # ... and the next ones (10 s each, about 1 s of wall time) are under way
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    summary = json.loads(stdout)
    assert summary["interrupted"] is True
    assert not list(out.glob("*.partial"))
    logs = sorted(out.glob("*.mcap"))
    assert sorted(summary["files"]) == [str(p) for p in logs]
    read = [read_drive_log(p) for p in logs]
    statuses = [log.status for log in read]
    assert "complete" in statuses and "interrupted: KeyboardInterrupt" in statuses
    for log in read:  # frames held for a batched write are written when the drive stops
        # a step logs its frame before it steps the world and logs the telemetry, so an
        # interrupt between the two leaves one frame more than telemetry rows, never fewer
        assert len(log.telemetry) <= log.message_counts["/camera/front"] <= len(log.telemetry) + 1
    assert set(statuses) <= {"complete", "interrupted: KeyboardInterrupt"}


def test_a_full_disk_stops_the_drive_with_one_error_and_closed_logs_stay_intact(
    tmp_path: Path,
) -> None:
    """A real 384 KiB tmpfs fills up during the drive (needs a private mount namespace)."""
    unshare, mnt, mount = small_tmpfs(tmp_path, "384k")
    record = tmp_path / "closed.json"
    script = (
        f"{mount} && "
        f"{sys.executable} -m dojo.cli drive --cars 2 --minutes 2 --mode manual --drive-seconds 2 --out {mnt}; "
        f'rc=$?; {sys.executable} -c "import json,sys,pathlib; from dojo.drivelog import read_drive_log; '
        f"print(json.dumps({{p.name: read_drive_log(p).status for p in sorted(pathlib.Path('{mnt}').glob('*.mcap'))}}))\" > {record}; "
        f"ls {mnt} > {record}.ls; exit $rc"
    )
    run = subprocess.run(
        [unshare, "-rm", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert run.returncode == 2, run.stderr[-2000:]
    assert run.stderr.strip().splitlines()[-1].startswith("dojo: error: The disk is full")
    closed = json.loads(record.read_text())
    assert len(closed) >= 2  # drives finished before the disk filled up
    complete = [name for name, status in closed.items() if status == "complete"]
    assert len(complete) >= 2
    assert ".partial" not in (tmp_path / "closed.json.ls").read_text()
