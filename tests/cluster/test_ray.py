"""`--ray` on a real Ray cluster the test starts itself: a head plus a second node on this machine.

The same seeds give the same counts, log bytes and drive ids as locally; a worker killed
mid-task changes nothing. (``ray stop --force`` at the end stops every Ray cluster here.)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("ray")

RAY = str(Path(sys.executable).with_name("ray"))
DOJO = [sys.executable, "-m", "dojo.cli"]
# fast health checks: a dead node is noticed in seconds, not the default half minute
FAST = {
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    env = {**os.environ, **FAST}
    port = _free_port()
    address = f"127.0.0.1:{port}"
    head = [RAY, "start", "--head", f"--port={port}", "--num-cpus=1", "--disable-usage-stats"]
    node = [RAY, "start", f"--address={address}", "--num-cpus=1", "--disable-usage-stats"]
    for cmd in (head + ["--include-dashboard=false"], node):
        subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=120)
    try:
        yield address
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=120)


def _dojo(*args: str, timeout: float = 300) -> dict:
    run = subprocess.run([*DOJO, *args, "--json"], capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout)  # the JSON is the whole stdout: Ray printed nothing there


def _drive_args(out: Path) -> list[str]:
    return ["drive", "--cars", "4", "--minutes", "0.2", "--drive-seconds", "6", "--mode",
            "mixed", "--policy", "naive", "--seed", "5", "--out", str(out)]  # fmt: skip


def test_a_drive_on_ray_writes_the_same_logs_as_locally(cluster: str, tmp_path: Path) -> None:
    local = _dojo(*_drive_args(tmp_path / "local"))
    on_ray = _dojo(*_drive_args(tmp_path / "ray"), "--batch-cars", "1", "--ray", cluster)
    a = {p.name: p.read_bytes() for p in (tmp_path / "local").iterdir()}
    b = {p.name: p.read_bytes() for p in (tmp_path / "ray").iterdir()}  # no attempt folders left
    assert len(a) >= 8 and a == b
    for key in ("decisions", "drives", "critical_interventions", "collisions", "near_misses"):
        assert on_ray[key] == local[key], key


def test_ingest_and_autolabel_on_ray_store_the_same_drives(cluster: str, tmp_path: Path) -> None:
    _dojo(*_drive_args(tmp_path / "logs"))
    counts = []
    for name, ray in (("local", []), ("ray", ["--ray", cluster])):
        store = str(tmp_path / name)
        got = _dojo("ingest", str(tmp_path / "logs"), "--store", store, *ray)
        labels = _dojo("autolabel", store, *ray)
        drives = sorted(p.name for p in (tmp_path / name / "drives").iterdir())
        counts.append((got["files_ingested"], got["frames"], labels["frames_labelled"], drives))
        assert got["workers"] == (2 if ray else got["workers"])  # the cluster's CPUs
    assert counts[0] == counts[1] and counts[0][0] >= 8


def _ray_workers() -> list[int]:
    """Pids of Ray worker processes running one of our tasks now."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if entry.name.isdigit() and cmd.startswith(b"ray::_call"):
            pids.append(int(entry.name))
    return pids


def test_an_evaluation_on_ray_counts_what_a_local_one_does_even_with_a_worker_killed(
    cluster: str, tmp_path: Path
) -> None:
    args = ["eval", "--policy", "naive", "--decisions", "6000", "--cars", "4"]
    local = _dojo(*args)
    run = subprocess.Popen([*DOJO, *args, "--ray", cluster, "--json"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)  # fmt: skip
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and time.monotonic() < deadline and run.poll() is None:
        pids = _ray_workers()
        if pids:
            killed = pids[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    out, err = run.communicate(timeout=300)
    assert killed is not None, "no task worker was seen running"
    assert run.returncode == 0, err[-2000:]
    on_ray = json.loads(out)
    for key in ("decisions", "critical_interventions", "noncritical_interventions", "collisions"):
        assert on_ray[key] == local[key], key
    for fam, counts in local["families"].items():
        assert on_ray["families"][fam]["per_drive"] == counts["per_drive"], fam
