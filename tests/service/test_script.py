"""``script`` jobs end to end: a tenant's own code, uploaded, run by a real agent under torchrun in
the bubblewrap sandbox, preempted, resumed, and its model downloaded; hostile code denied."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from dojo.compute.topology import parse_system
from dojo.service.agent import sandbox
from dojo.service.agent.runner import Agent
from dojo.service.sched.dispatch import schedule_pass
from dojo.service.store import jobstore
from dojo.service.store.db import Database
from dojo.service.store.schema import JobRun
from dojo.service.tenant_commands import pack
from tests.service.conftest import Service, make_service, upload
from tests.service.test_agent import wait_for

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "defects"
needs_sandbox = pytest.mark.skipif(
    sandbox.available() is not None, reason=f"no sandbox here: {sandbox.available()}"
)


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Service]:
    """SQLite only: these tests run real training; the store's SQL is covered elsewhere on both."""
    yield from make_service(f"sqlite:///{tmp_path / 'jobs.db'}", tmp_path / "data")


def _agent(svc: Service, **kw: Any) -> Agent:
    return Agent(
        svc.config.db_url,
        data_dir=svc.data_dir,
        host_name="h1",
        heartbeat_s=0.2,
        stale_after_s=30.0,
        topology=parse_system("cabinet"),
        max_nproc=2,
        stop_grace_s=20.0,
        **kw,
    )


def _upload_code(svc: Service, headers: dict[str, str], folder: Path, name: str) -> str:
    r = svc.client.post(
        "/v1/code",
        params={"name": name},
        content=pack(folder),
        headers={**headers, "Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _submit(svc: Service, headers: dict[str, str], spec: dict[str, Any], chips: int = 2) -> str:
    r = svc.client.post(
        "/v1/jobs",
        json={"kind": "script", "spec": spec, "compute": {"chips": chips}},
        headers=headers,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _job(svc: Service, headers: dict[str, str], job_id: str) -> dict[str, Any]:
    return dict(svc.client.get(f"/v1/jobs/{job_id}", headers=headers).json())


def _log(svc: Service, headers: dict[str, str], job_id: str) -> str:
    return svc.client.get(f"/v1/jobs/{job_id}/logs", headers=headers).text


def _metrics(svc: Service, headers: dict[str, str], job_id: str) -> list[dict[str, Any]]:
    r = svc.client.get(f"/v1/jobs/{job_id}/metrics", params={"limit": 10_000}, headers=headers)
    return list(r.json()["rows"])


@needs_sandbox
def test_a_customer_trains_across_2_processes_is_preempted_resumes_and_downloads_the_model(
    svc: Service, tmp_path: Path
) -> None:
    acme, rival = svc.tenant("acme"), svc.tenant("rival", max_chips=300)
    images = tmp_path / "images"
    subprocess.run(
        [sys.executable, str(EXAMPLE / "make_data.py"), "--out", str(images), "--per-class", "60"],
        check=True,
        capture_output=True,
    )
    ds = svc.client.post("/v1/datasets", json={"name": "defects", "kind": "files"}, headers=acme)
    assert ds.status_code == 201 and ds.json()["kind"] == "files", ds.text
    for png in sorted(images.rglob("*.png")):
        name = png.relative_to(images).as_posix()  # ok/0000.png: a files dataset keeps folders
        assert upload(svc, acme, ds.json()["id"], name, png.read_bytes()).status_code == 201
    code = _upload_code(svc, acme, EXAMPLE, "defects")
    assert "train.py" in svc.client.get(f"/v1/code/{code}/files", headers=acme).json()
    job = _submit(
        svc,
        acme,
        {
            "code": code,
            "entry": "train.py",
            "args": ["--epochs", "150", "--batch", "16"],
            "dataset": ds.json()["id"],
        },  # fmt: skip
    )
    agent = _agent(svc)
    outcome: list[str | None] = []
    run = threading.Thread(target=lambda: outcome.append(agent.step()))
    run.start()
    wait_for(lambda: len(_metrics(svc, acme, job)) >= 5 or bool(outcome), 120, "training to start")
    # another company's urgent job of the whole cabinet: the scheduler preempts ours
    urgent = svc.client.post(
        "/v1/jobs",
        json={
            "kind": "eval",
            "spec": {"policy": "naive"},
            "compute": {"chips": 300},
            "priority": 10,
        },  # fmt: skip
        headers=rival,
    )
    assert urgent.status_code == 201, urgent.text
    db = Database(svc.config.db_url)
    assert schedule_pass(db, parse_system("cabinet")).preempted == [job]
    run.join(60)
    assert outcome == ["preempted"], _log(svc, acme, job)
    assert "checkpointed" in _log(svc, acme, job)
    steps_before = max(r["step"] for r in _metrics(svc, acme, job))
    svc.client.post(f"/v1/jobs/{urgent.json()['id']}/cancel", headers=rival)
    assert agent.step() == "succeeded", _log(svc, acme, job)

    log = _log(svc, acme, job)
    assert "resumed from last.pt" in log and "stored 1 output file(s) as models" in log
    resumed_at = int(log.split("resumed from last.pt at epoch ")[1].split("step ")[1].split()[0])
    assert 0 < resumed_at <= steps_before  # it went on from its checkpoint, not from scratch
    rows = _metrics(svc, acme, job)
    accuracy = [r["accuracy"] for r in rows if "accuracy" in r]
    assert len(accuracy) >= 1 and accuracy[-1] >= 0.75, accuracy
    with db.session() as s:
        runs = s.query(JobRun).filter_by(job_id=job).order_by(JobRun.id).all()
        assert [r.outcome for r in runs] == ["preempted", "succeeded"]
        assert all(r.chips == 2 and r.ended_at is not None for r in runs)
    db.dispose()

    models = svc.client.get("/v1/models", params={"job_id": job}, headers=acme).json()
    assert [m["name"] for m in models] == ["defects.pt"]
    got = svc.client.get(f"/v1/models/{models[0]['id']}/download", headers=acme)
    assert got.status_code == 200
    weights = torch.load(io.BytesIO(got.content), weights_only=True)
    assert weights["0.weight"].shape == (16, 1, 3, 3)  # the example's net
    # another tenant sees none of it
    assert (
        svc.client.get(f"/v1/models/{models[0]['id']}/download", headers=rival).status_code == 404
    )
    assert svc.client.get(f"/v1/jobs/{job}", headers=rival).status_code == 404


HOSTILE = r"""
import os, socket, sys
target_file, target_dir, db_file = sys.argv[1:4]
def attempt(what, fn):
    try:
        fn()
        print("LEAK", what, flush=True)
    except Exception as e:
        print("DENIED", what, type(e).__name__, flush=True)
attempt("read another tenant's upload", lambda: open(target_file, "rb").read())
attempt("list another tenant's folder", lambda: os.listdir(target_dir))
attempt("read the job store", lambda: open(db_file, "rb").read())
attempt("write outside the job folder", lambda: open("/job/code/x", "w").write("x"))
attempt("write to the dataset", lambda: open("/job/data/x", "w").write("x"))
def connect():
    s = socket.create_connection(("127.0.0.1", 5432), timeout=2); s.close()
attempt("connect to the database server", connect)
attempt("resolve a name", lambda: socket.getaddrinfo("example.com", 80))
open(os.environ["DOJO_OUTPUT_DIR"] + "/note.txt", "w").write("hello")
"""


@needs_sandbox
def test_hostile_script_is_denied_and_the_service_and_other_tenants_are_untouched(
    svc: Service, tmp_path: Path
) -> None:
    acme, rival = svc.tenant("acme"), svc.tenant("rival")
    theirs = svc.client.post("/v1/datasets", json={"name": "secret"}, headers=rival).json()
    assert upload(svc, rival, theirs["id"], "drive.mcap").status_code == 201
    their_dir = svc.ctx.storage.dataset_dir(svc.tenants["rival"]["id"], theirs["id"])
    before = (their_dir / "drive.mcap").read_bytes()
    mine = svc.client.post("/v1/datasets", json={"name": "mine", "kind": "files"}, headers=acme)
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "evil.py").write_text(HOSTILE)
    db_file = str(svc.config.db_url).removeprefix("sqlite:///")
    job = _submit(
        svc,
        acme,
        {
            "code": _upload_code(svc, acme, folder, "evil"),
            "entry": "evil.py",
            "args": [str(their_dir / "drive.mcap"), str(their_dir), db_file],
            "dataset": mine.json()["id"],
        },  # fmt: skip
        chips=1,
    )
    assert _agent(svc).step() == "succeeded", _log(svc, acme, job)
    log = _log(svc, acme, job)
    assert log.count("DENIED") == 7 and "LEAK" not in log, log
    assert (their_dir / "drive.mcap").read_bytes() == before
    assert svc.client.get("/v1/datasets", headers=rival).json()[0]["files"] == 1  # still served
    names = [m["name"] for m in svc.client.get("/v1/models", headers=acme).json()]
    assert names == ["note.txt"]  # what it left in its output folder, and nothing else


def test_an_agent_without_a_sandbox_refuses_tenant_code_with_the_reason(
    svc: Service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    acme = svc.tenant("acme")
    folder = tmp_path / "code"
    folder.mkdir()
    marker = tmp_path / "ran"
    (folder / "train.py").write_text(f"open({str(marker)!r}, 'w').write('ran bare')\n")
    job = _submit(svc, acme, {"code": _upload_code(svc, acme, folder, "c"), "entry": "train.py"})
    monkeypatch.setattr(sandbox, "BWRAP", "bwrap-not-installed-here")  # a host without it
    assert _agent(svc).step() == "failed"
    row = _job(svc, acme, job)
    assert row["error"].startswith("this agent cannot sandbox tenant code: bubblewrap")
    assert not marker.exists()  # never run bare
    db = Database(svc.config.db_url)
    with db.session() as s:
        assert jobstore.get(s, svc.tenants["acme"]["id"], job).status == "failed"
    db.dispose()
