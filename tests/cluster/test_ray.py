"""`--ray` on a real Ray cluster the test starts itself: a head plus a second node on this machine.

The same seeds give the same counts, log bytes and drive ids as locally; a worker killed
mid-task changes nothing.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

pytest.importorskip("ray")

from tests.cluster.raycluster import (  # noqa: E402
    EVAL,
    RayCluster,
    assert_same_counts,
    run_dojo,
    start_dojo,
    wait_for_task,
)


def _drive_args(out: Path) -> list[str]:
    return ["drive", "--cars", "4", "--minutes", "0.2", "--drive-seconds", "6", "--mode",
            "mixed", "--policy", "naive", "--seed", "5", "--out", str(out)]  # fmt: skip


def test_a_drive_on_ray_writes_the_same_logs_as_locally(
    cluster: RayCluster, tmp_path: Path
) -> None:
    local = run_dojo(*_drive_args(tmp_path / "local"))
    on_ray = run_dojo(*_drive_args(tmp_path / "ray"), "--batch-cars", "1", "--ray", cluster.address)
    a = {p.name: p.read_bytes() for p in (tmp_path / "local").iterdir()}
    b = {p.name: p.read_bytes() for p in (tmp_path / "ray").iterdir()}  # no attempt folders left
    assert len(a) >= 8 and a == b
    for key in ("decisions", "drives", "critical_interventions", "collisions", "near_misses"):
        assert on_ray[key] == local[key], key


def test_ingest_and_autolabel_on_ray_store_the_same_drives(
    cluster: RayCluster, tmp_path: Path
) -> None:
    run_dojo(*_drive_args(tmp_path / "logs"))
    counts = []
    for name, ray in (("local", []), ("ray", ["--ray", cluster.address])):
        store = str(tmp_path / name)
        got = run_dojo("ingest", str(tmp_path / "logs"), "--store", store, *ray)
        labels = run_dojo("autolabel", store, *ray)
        drives = sorted(p.name for p in (tmp_path / name / "drives").iterdir())
        counts.append((got["files_ingested"], got["frames"], labels["frames_labelled"], drives))
        if ray:
            assert got["workers"] == 2  # the cluster's CPUs
    assert counts[0] == counts[1] and counts[0][0] >= 8


def test_an_evaluation_on_ray_counts_what_a_local_one_does_even_with_a_worker_killed(
    cluster: RayCluster, tmp_path: Path
) -> None:
    local = run_dojo(*EVAL)
    run = start_dojo(*EVAL, "--ray", cluster.address)
    assert wait_for_task(cluster, 1, run), "no task worker was seen running"
    os.kill(cluster.task_workers(1)[0], signal.SIGKILL)  # the worker process alone, mid-task
    out, err = run.communicate(timeout=300)
    assert run.returncode == 0, err[-2000:]
    assert_same_counts(json.loads(out), local)


def test_an_evaluation_split_into_car_batches_counts_what_the_whole_fleets_do(
    cluster: RayCluster,
) -> None:
    local = run_dojo(*EVAL)
    on_ray = run_dojo(*EVAL, "--batch-cars", "1", "--ray", cluster.address)  # 4 tasks a family
    assert_same_counts(on_ray, local)
    for fam in local["families"]:
        assert on_ray["families"][fam]["cars"] == local["families"][fam]["cars"]
        assert on_ray["families"][fam]["drives"] == local["families"][fam]["drives"]


def test_overlapping_ingests_on_ray_into_one_store_take_each_drive_once(
    cluster: RayCluster, tmp_path: Path
) -> None:
    run_dojo(*_drive_args(tmp_path / "logs"))
    files = sorted((tmp_path / "logs").glob("*.mcap"))
    half = len(files) // 2
    sets = {"a": files[: half + 2], "b": files[half - 2 :]}  # 4 files in both
    store = tmp_path / "store"
    runs = [
        start_dojo("ingest", *map(str, chunk), "--store", str(store), "--ray", cluster.address)
        for chunk in sets.values()
    ]
    got = []
    for run in runs:
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err[-2000:]
        got.append(json.loads(out))
    assert sum(g["files_ingested"] for g in got) == len(files)  # each drive once
    assert sum(g["files_already"] for g in got) == 4 and not any(g["quarantined"] for g in got)
    assert len(list((store / "drives").iterdir())) == len(files)
    assert not list((store / "tmp").iterdir())  # nothing torn or left half-written
    clean = tmp_path / "clean"
    run_dojo("ingest", str(tmp_path / "logs"), "--store", str(clean))
    sql = "SELECT clip_id, frames, content_hash FROM clips ORDER BY 1"
    assert run_dojo("query", str(store), sql) == run_dojo("query", str(clean), sql)


def _turns(result: dict) -> list[dict]:
    keep = ("drive", "windows", "windows_by_trigger", "train_loss", "decisions",
            "critical_interventions", "collisions", "nines", "promoted")  # fmt: skip
    turns = [{k: turn[k] for k in keep} for turn in result["loops"]]
    for turn in turns:
        turn["drive"] = {k: v for k, v in turn["drive"].items() if k != "policy"}  # a path
    return turns


def test_a_toy_loop_on_ray_runs_the_turns_a_local_one_does(
    cluster: RayCluster, tmp_path: Path
) -> None:
    from tests.loop.test_loop import _toy_loop_argv

    suites = tmp_path / "suites.toml"
    suites.write_text('[suites.stalled_only]\nfamilies = ["stalled"]\nseeds = [1000000, 1000100]\n')
    local = run_dojo(*_toy_loop_argv(tmp_path / "local", suites)[:-1])
    argv = _toy_loop_argv(tmp_path / "ray", suites)[:-1]
    on_ray = run_dojo(*argv, "--ray", cluster.address)  # the network's fleet not split
    assert len(on_ray["loops"]) == 2 and _turns(on_ray) == _turns(local)
    logs = sorted(p.name for p in (tmp_path / "ray").rglob("*.mcap"))
    assert logs and logs == sorted(p.name for p in (tmp_path / "local").rglob("*.mcap"))


def test_a_store_the_nodes_cannot_reach_is_refused_before_any_work(
    cluster: RayCluster, tmp_path: Path
) -> None:
    # an in-memory store lives in this process alone: no Ray node sees it
    run_dojo(*_drive_args(tmp_path / "logs"))
    run = start_dojo("ingest", str(tmp_path / "logs"), "--store", "memory://here", "--ray",
                     cluster.address)  # fmt: skip
    out, err = run.communicate(timeout=300)
    assert run.returncode == 2 and out == ""
    ours = [line for line in err.splitlines() if line.startswith("dojo: error:")]
    assert len(ours) == 1 and "The store memory://here is not reachable from Ray node" in ours[0]
