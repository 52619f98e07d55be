"""Agents: real subprocesses on SQLite and PostgreSQL; kill -9 one mid-job and another resumes it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dojo.compute.topology import parse_system
from dojo.errors import DojoConfigError
from dojo.service.agent.runner import CHECKPOINT_FILE, Agent, JobContext, command_for
from dojo.service.api import admin
from dojo.service.api.models import JobSubmit
from dojo.service.placement import Placement
from dojo.service.store import jobstore
from dojo.service.store.db import Database
from dojo.service.store.schema import Job, MetricRow, Tenant

# A stand-in for `dojo` (same command line): `train` counts steps, writes metrics.jsonl and an
# atomic checkpoint every step, and continues from the checkpoint when given --resume.
FAKE_DOJO = r"""
import json, os, pathlib, sys, time
args = sys.argv[1:]
def opt(name):
    return args[args.index(name) + 1]
if args[0] != "train":
    print("ran", " ".join(args)); sys.exit(0)
out = pathlib.Path(opt("--out")); out.mkdir(parents=True, exist_ok=True)
ck = out / "checkpoint.pt"
start = json.loads(ck.read_text())["step"] if "--resume" in args else 0
with (out / "pids").open("a") as f:
    f.write(f"{os.getpid()}\n")
print(f"start at step {start}", flush=True)
for step in range(start + 1, int(opt("--steps")) + 1):
    time.sleep(float(os.environ.get("FAKE_STEP_S", "0.2")))
    with (out / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"step": step, "loss": 1.0 / step}) + "\n")
    (out / "ck.tmp").write_text(json.dumps({"step": step})); os.replace(out / "ck.tmp", ck)
    print(f"step {step}", flush=True)
print(json.dumps({"resumed_from": start}))
"""

AGENT = r"""
import sys
from dojo.compute.topology import parse_system
from dojo.errors import DojoConfigError
from dojo.service.agent.runner import Agent
Agent(sys.argv[1], data_dir=sys.argv[2], host_name=sys.argv[3], heartbeat_s=0.3, stale_after_s=2.0, poll_s=0.2,
      topology=parse_system("cabinet"), dojo=[sys.executable, sys.argv[4]]).run()
"""


@pytest.fixture
def store(db_url: str) -> Iterator[tuple[str, str]]:
    """The job store URL and a tenant id."""
    admin.tenant_create(db_url, "acme", {})
    db = Database(db_url)
    with db.session() as s:
        tid = s.query(Tenant).one().id
    db.dispose()
    yield db_url, tid


def submit(
    db_url: str, tenant: str, kind: str, spec: dict[str, Any], chips: int = 1, **extra: Any
) -> str:
    db = Database(db_url)
    with db.session() as s:
        job_id = jobstore.submit(
            s,
            tenant,
            JobSubmit.model_validate(
                {"kind": kind, "spec": spec, "compute": {"chips": chips}, **extra}
            ),
        ).id
    db.dispose()
    return job_id


def job_row(db_url: str, job_id: str) -> dict[str, Any]:
    db = Database(db_url)
    with db.session() as s:
        j = s.get(Job, job_id)
        assert j is not None
        row = {
            "status": j.status,
            "attempt": j.attempt,
            "agent": j.agent,
            "placement": j.placement,
            "exit_code": j.exit_code,
            "error": j.error,
            "log": jobstore.read_log(s, job_id, 0, 1 << 22).decode(),
            "metrics": [
                m.data for m in s.query(MetricRow).filter_by(job_id=job_id).order_by(MetricRow.seq)
            ],
        }
    db.dispose()
    return row


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _ctx(
    tmp_path: Path, kind: str, spec: dict[str, Any], count: int = 1, max_nproc: int = 1
) -> JobContext:
    return JobContext(
        id="job_0123456789abcdef",
        tenant_id="ten_x",
        kind=kind,
        spec=spec,
        placement=Placement(kind="chips", count=count),
        attempt=1,
        data_dir=tmp_path,
        run_dir=tmp_path / "run",
        max_nproc=max_nproc,
    )


def test_train_command_resumes_from_a_checkpoint_and_takes_nproc(tmp_path: Path) -> None:
    from dojo.service.specs import TrainSpec

    spec = TrainSpec.model_validate({"dataset": "cut_ins@v2", "steps": 50}).model_dump()
    ctx = _ctx(tmp_path, "train", spec, count=25, max_nproc=4)
    cmd = command_for(ctx)
    assert cmd[1:4] == ["-m", "dojo.cli", "train"] and "--resume" not in cmd
    assert cmd[cmd.index("--nproc") + 1] == "4" and cmd[cmd.index("--steps") + 1] == "50"
    assert cmd[cmd.index("--store") + 1] == str(tmp_path / "tenants" / "ten_x" / "store")
    out = Path(cmd[cmd.index("--out") + 1])
    out.mkdir(parents=True)
    (out / CHECKPOINT_FILE).write_bytes(b"x")
    assert command_for(ctx)[-1] == "--resume"
    assert "--nproc" not in command_for(_ctx(tmp_path, "train", spec, count=25, max_nproc=1))


def test_agent_runs_a_real_drive_job_and_stores_its_logs_in_the_dataset_once_within_the_quota(
    tmp_path: Path,
) -> None:
    import hashlib

    from dojo.service.agent.drive_logs import store_drive_logs
    from dojo.service.api.problems import ApiError
    from dojo.service.store.schema import Dataset, DatasetFile
    from dojo.service.store.storage import Storage

    db_url = f"sqlite:///{tmp_path / 'jobs.db'}"
    admin.tenant_create(db_url, "acme", {})
    db = Database(db_url)
    with db.session() as s:
        tid = s.query(Tenant).one().id
        s.add(
            Dataset(
                id="ds_0123456789abcdef",
                tenant_id=tid,
                name="fleet",
                source="upload",
                size_bytes=0,
                files=0,
            )
        )
    job_id = submit(
        db_url,
        tid,
        "drive",
        {
            "cars": 2,
            "minutes": 0.05,
            "mode": "manual",
            "drive_seconds": 3.0,
            "dataset": "ds_0123456789abcdef",
        },
    )
    agent = Agent(
        db_url,
        data_dir=tmp_path / "data",
        host_name="h1",
        heartbeat_s=1.0,
        stale_after_s=10.0,
        topology=parse_system("cabinet"),
    )
    assert agent.step() == "succeeded"
    row = job_row(db_url, job_id)
    assert row["status"] == "succeeded" and row["exit_code"] == 0 and row["attempt"] == 1
    assert (
        '"cars": 2' in row["log"] and "critical_interventions" in row["log"]
    )  # the child's JSON summary
    assert agent.step() is None  # nothing left
    logs_dir = tmp_path / "data" / "tenants" / tid / "jobs" / job_id / "run" / "logs"
    logs = sorted(logs_dir.rglob("*.mcap"))
    with db.session() as s:
        files = {f.name: f for f in s.query(DatasetFile).all()}
        ds = s.get(Dataset, "ds_0123456789abcdef")
        assert ds is not None
        assert ds.files == len(logs) >= 2 and ds.size_bytes == sum(p.stat().st_size for p in logs)
    stored_dir = tmp_path / "data" / "tenants" / tid / "datasets" / "ds_0123456789abcdef"
    for log in logs:
        name = f"{job_id}_{log.relative_to(logs_dir).as_posix().replace('/', '_')}"
        assert files[name].sha256 == hashlib.sha256(log.read_bytes()).hexdigest()
        assert (stored_dir / name).read_bytes() == log.read_bytes()
    assert "stored" in job_row(db_url, job_id)["log"]
    storage = Storage(tmp_path / "data", 0)
    # run again (as after a lost agent): nothing new, nothing doubled
    assert (
        store_drive_logs(db, storage, tid, "ds_0123456789abcdef", job_id, logs_dir, cap=1 << 30)
        == 0
    )
    # another job's logs over the storage quota: refused with the reason, no file left behind
    admin.tenant_update(db_url, "acme", {"max_storage_bytes": ds.size_bytes + 10}, None)
    with pytest.raises(ApiError, match="max_storage_bytes"):
        store_drive_logs(
            db, storage, tid, "ds_0123456789abcdef", "job_other0000000000", logs_dir, cap=1 << 30
        )
    assert sorted(p.name for p in stored_dir.iterdir()) == sorted(files)
    with pytest.raises(ApiError, match="not found"):
        store_drive_logs(
            db, storage, "ten_someone_else", "ds_0123456789abcdef", job_id, logs_dir, cap=1 << 30
        )
    db.dispose()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_kill_9_agent_mid_job_another_resumes_from_checkpoint(
    store: tuple[str, str], tmp_path: Path
) -> None:
    db_url, tid = store
    (tmp_path / "fake_dojo.py").write_text(FAKE_DOJO)
    (tmp_path / "agent.py").write_text(AGENT)
    job_id = submit(db_url, tid, "train", {"dataset": "cut_ins@v1", "steps": 12}, chips=25)
    run = tmp_path / "data" / "tenants" / tid / "jobs" / job_id / "run" / "train"

    def agent(name: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                sys.executable,
                str(tmp_path / "agent.py"),
                db_url,
                str(tmp_path / "data"),
                name,
                str(tmp_path / "fake_dojo.py"),
            ],
            stderr=subprocess.DEVNULL,
        )

    def step_done() -> int:
        try:
            return int(json.loads((run / CHECKPOINT_FILE).read_text())["step"])
        except (OSError, ValueError):
            return 0

    first = agent("host-a")
    try:
        wait_for(lambda: step_done() >= 3, 30, "the first agent's checkpoints")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    killed_at = step_done()
    child = int((run / "pids").read_text().split()[0])
    wait_for(lambda: not _pid_alive(child), 5, "the orphaned job process to die with its agent")
    assert job_row(db_url, job_id)["status"] == "running"  # nobody knows yet
    second = agent("host-b")
    try:
        wait_for(
            lambda: job_row(db_url, job_id)["status"] == "succeeded",
            40,
            "the job to finish on host-b",
        )
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(20)
    row = job_row(db_url, job_id)
    assert row["attempt"] == 2 and row["agent"].startswith("host-b/")
    resumed = json.loads(row["log"].strip().splitlines()[-1])["resumed_from"]
    assert killed_at <= resumed + 1 and resumed >= 3  # lost at most the step in flight
    assert f"start at step {resumed}" in row["log"] and "start at step 0" in row["log"]
    assert [m["step"] for m in row["metrics"]] == list(
        range(1, 13)
    )  # every step once, across both runs


def test_preempted_job_is_requeued_and_a_cancelled_one_closed(
    store: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db_url, tid = store
    (tmp_path / "fake_dojo.py").write_text(FAKE_DOJO)
    monkeypatch.setenv("FAKE_STEP_S", "0.05")
    job_id = submit(db_url, tid, "train", {"dataset": "cut_ins@v1", "steps": 100000}, chips=25)
    agent = Agent(
        db_url,
        data_dir=tmp_path / "data",
        host_name="h1",
        heartbeat_s=0.2,
        stale_after_s=5.0,
        topology=parse_system("cabinet"),
        dojo=[sys.executable, str(tmp_path / "fake_dojo.py")],
        stop_grace_s=5.0,
    )
    db = Database(db_url)
    outcome: list[str | None] = []

    def run_in_thread(metrics: int) -> threading.Thread:
        before = len(outcome)
        t = threading.Thread(target=lambda: outcome.append(agent.step()))
        t.start()
        wait_for(
            lambda: len(job_row(db_url, job_id)["metrics"]) >= metrics or len(outcome) > before,
            30,
            "the job to run",
        )
        return t

    t = run_in_thread(2)
    # an urgent job takes the whole cabinet: the scheduler flags ours for preemption
    urgent = submit(db_url, tid, "eval", {"policy": "naive"}, chips=300, priority=10)
    from dojo.service.sched.dispatch import schedule_pass

    assert schedule_pass(db, parse_system("cabinet")).preempted == [job_id]
    t.join(30)
    assert outcome == ["preempted"]
    row = job_row(db_url, job_id)
    assert row["status"] == "queued" and row["attempt"] == 0 and row["placement"] is None
    with db.session() as s:  # the urgent one is done; ours is placed again and resumes
        jobstore.cancel(s, tid, urgent)
    done = len(job_row(db_url, job_id)["metrics"])
    t = run_in_thread(done + 2)
    log = job_row(db_url, job_id)["log"]
    starts = [int(k) for k in re.findall(r"start at step (\d+)", log)]
    assert (
        log.count("--resume") == 1 and starts[0] == 0 and starts[1] >= 1
    )  # the second run resumed
    with db.session() as s:
        assert jobstore.cancel(s, tid, job_id).status == "cancelling"
    t.join(30)
    assert outcome[-1] == "cancelled"
    assert job_row(db_url, job_id)["status"] == "cancelled"
    db.dispose()


def test_a_run_past_its_time_limit_is_stopped_and_fails(
    store: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db_url, tid = store
    (tmp_path / "fake_dojo.py").write_text(FAKE_DOJO)
    monkeypatch.setenv("FAKE_STEP_S", "0.1")
    job_id = submit(
        db_url, tid, "train", {"dataset": "cut_ins@v1", "steps": 100000}, chips=25, time_limit_s=1
    )
    agent = Agent(
        db_url,
        data_dir=tmp_path / "data",
        host_name="h1",
        heartbeat_s=5.0,
        stale_after_s=30.0,
        topology=parse_system("cabinet"),
        dojo=[sys.executable, str(tmp_path / "fake_dojo.py")],
        stop_grace_s=5.0,
    )
    started = time.monotonic()
    assert agent.step() == "failed"
    took = time.monotonic() - started
    row = job_row(db_url, job_id)
    assert row["status"] == "failed" and row["error"] == "stopped at its time limit of 1 s"
    assert 1.0 <= took < 5.0  # the limit, not the 5 s heartbeat, woke the agent
    assert 3 <= len(row["metrics"]) <= 15  # it ran for about its second, then stopped


def test_train_fine_tunes_a_stored_model_and_a_loop_starts_from_one(tmp_path: Path) -> None:
    from dojo.service.specs import LoopSpec, TrainSpec

    model = "mdl_0123456789abcdef"
    spec = TrainSpec.model_validate({"dataset": "cut_ins@v2", "resume_from": model}).model_dump()
    ctx = _ctx(tmp_path, "train", spec)
    ctx.paths[model] = str(tmp_path / "models" / "policy.pt")
    cmd = command_for(ctx)
    assert (
        cmd[cmd.index("--init-from") + 1] == str(tmp_path / "models" / "policy.pt")
        and "--resume" not in cmd
    )
    loop = _ctx(
        tmp_path, "loop", LoopSpec.model_validate({"policy": model, "turns": 2}).model_dump()
    )
    loop.paths[model] = str(tmp_path / "models" / "policy.pt")
    cmd = command_for(loop)
    assert cmd[cmd.index("--start-policy") + 1] == str(tmp_path / "models" / "policy.pt")
    assert cmd[cmd.index("--loops") + 1] == "2" and "--resume" not in cmd
    (tmp_path / "run" / "loop").mkdir(parents=True)
    (tmp_path / "run" / "loop" / "progress.json").write_text("{}")
    assert command_for(loop)[-3:] == ["--resume", str(tmp_path / "run" / "loop"), "--json"]
    with pytest.raises(DojoConfigError, match="cannot deploy 'expert'"):
        command_for(
            _ctx(
                tmp_path / "other",
                "loop",
                LoopSpec.model_validate({"policy": "expert"}).model_dump(),
            )
        )
