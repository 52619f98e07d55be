"""The job store itself: startup errors, and the claim/heartbeat/finish calls that
a scheduler or agent makes on the shared database."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, text

from dojo.cli import main
from dojo.errors import DojoConfigError
from dojo.service.api.models import JobKind, JobSubmit
from dojo.service.store import jobstore
from dojo.service.store.db import Database
from dojo.service.store.schema import Tenant, utcnow

from .conftest import Service


def test_sqlite_store_runs_in_wal_mode(tmp_path: Path) -> None:
    db = Database(str(tmp_path / "store.db"))  # a bare path means a SQLite file
    try:
        db.migrate()
        with db.engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    finally:
        db.dispose()


def _tenant(name: str) -> dict[str, object]:
    return {
        "id": f"ten_{name}",
        "name": name,
        "max_concurrent_jobs": 1,
        "max_chips": 1,
        "max_gpus": 1,
        "max_storage_bytes": 1,
    }


def test_reads_do_not_wait_for_a_writer_on_sqlite_and_see_only_committed_rows(
    tmp_path: Path,
) -> None:
    db = Database(str(tmp_path / "store.db"))
    try:
        db.migrate()
        with db.session() as s:
            s.execute(insert(Tenant), [_tenant("committed")])
        holding, release = threading.Event(), threading.Event()

        def writer() -> None:
            with db.session() as s:  # takes SQLite's write lock at BEGIN and keeps it
                s.execute(insert(Tenant), [_tenant("uncommitted")])
                holding.set()
                release.wait(60)

        t = threading.Thread(target=writer)
        t.start()
        try:
            assert holding.wait(30)
            done = threading.Event()
            seen: list[str] = []

            def reader() -> None:
                with db.session(readonly=True) as s:
                    seen.extend(s.scalars(text("SELECT name FROM tenants")).all())
                done.set()

            threading.Thread(target=reader, daemon=True).start()
            # a reader that queued for the write lock would wait for the writer (busy_timeout 30 s)
            assert done.wait(10), "a read-only session waited for the writer's lock"
            assert seen == ["committed"]  # the writer's row is not committed yet
        finally:
            release.set()
            t.join()
        with db.session(readonly=True) as s:
            assert sorted(s.scalars(text("SELECT name FROM tenants")).all()) == [
                "committed",
                "uncommitted",
            ]
    finally:
        db.dispose()


@pytest.mark.parametrize(
    "url, words",
    [
        ("postgresql://postgres@127.0.0.1:1/test", "Cannot reach the job store at postgresql"),
        ("mysql://root@127.0.0.1/x", "only SQLite and PostgreSQL"),
        ("postgresql+asyncpg://x@127.0.0.1/x", "pip install 'psycopg[binary]'"),
        ("::::", "neither a URL"),
        ("sqlite:////proc/nope/x.db", "Cannot create the folder"),
        ("sqlite:////proc/x.db", "Cannot reach the job store at sqlite"),
    ],
)
def test_serve_with_an_unreachable_store_exits_with_one_clear_line(
    url, words, capsys, tmp_path
) -> None:
    assert main(["serve", "--db", url, "--data-dir", str(tmp_path), "--port", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and err.count("\n") == 0 and "Traceback" not in err


def test_serve_with_an_unusable_data_folder_exits_with_one_clear_line(capsys, tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["serve", "--data-dir", str(blocker / "data"), "--port", "1"]) == 2
    assert "--data-dir" in capsys.readouterr().err


def test_password_is_masked_in_errors(tmp_path: Path) -> None:
    with pytest.raises(DojoConfigError) as e:
        Database("postgresql://bob:hunter2@127.0.0.1:1/test").check()
    assert "hunter2" not in str(e.value) and "bob:***@" in str(e.value)


def _queue(svc: Service, n: int, **fields: object) -> list[str]:
    headers = svc.tenant("acme", max_concurrent_jobs=1000, max_chips=100_000)
    ids = []
    for i in range(n):
        r = svc.client.post(
            "/v1/jobs",
            headers=headers,
            json={"kind": "eval", "spec": {"policy": "expert"}, "priority": i % 3, **fields},
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    return ids


def test_claims_follow_priority_then_age(svc: Service) -> None:
    ids = _queue(svc, 6)
    with svc.ctx.db.session() as s:
        order = [jobstore.claim_next(s, "host-a") for _ in range(7)]
    got = [j.id if j else None for j in order]
    # priorities 0,1,2,0,1,2: the 2s first (oldest first), then the 1s, then the 0s
    assert got == [ids[2], ids[5], ids[1], ids[4], ids[0], ids[3], None]


def test_concurrent_agents_never_claim_the_same_job(svc: Service) -> None:
    ids = _queue(svc, 24)
    claimed: dict[str, list[str]] = {}
    lock = threading.Lock()

    def agent(name: str) -> None:
        while True:
            with svc.ctx.db.session() as s:
                job = jobstore.claim_next(s, name)
                got = job.id if job else None
            if got is None:
                return
            with lock:
                claimed.setdefault(got, []).append(name)

    threads = [threading.Thread(target=agent, args=(f"agent-{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(ids)
    assert all(len(agents) == 1 for agents in claimed.values())


def test_heartbeat_finish_and_requeue_of_a_lost_agent(svc: Service) -> None:
    a, b = _queue(svc, 2, max_attempts=1)[0], None
    with svc.ctx.db.session() as s:
        first = jobstore.claim_next(s, "host-a")
        second = jobstore.claim_next(s, "host-b")
        assert first and second
        a, b = first.id, second.id
    with svc.ctx.db.session() as s:
        assert jobstore.heartbeat(s, a, "host-a") == "running"
        assert jobstore.heartbeat(s, a, "host-b") == "lost"  # not its job
        assert jobstore.finish(s, a, "host-a", status="succeeded", exit_code=0)
        assert not jobstore.finish(s, a, "host-a", status="failed")  # already closed
    later = utcnow() + timedelta(seconds=120)
    with svc.ctx.db.session() as s:
        assert jobstore.requeue_stale(s, 60, now=later) == [b]
    with svc.ctx.db.session() as s:
        job = s.get(jobstore.Job, b)
        assert job is not None and job.status == "failed"  # max_attempts=1: no retry left
        done = s.get(jobstore.Job, a)
        assert done is not None and done.status == "succeeded" and done.exit_code == 0


def test_a_stale_job_with_attempts_left_is_queued_again(svc: Service) -> None:
    _queue(svc, 1)
    with svc.ctx.db.session() as s:
        job = jobstore.claim_next(s, "host-a")
        assert job is not None and job.attempt == 1
        job_id = job.id
    with svc.ctx.db.session() as s:
        assert jobstore.requeue_stale(s, 60, now=utcnow() + timedelta(seconds=61)) == [job_id]
    with svc.ctx.db.session() as s:
        again = jobstore.claim_next(s, "host-b")
        assert again is not None and again.id == job_id and again.attempt == 2


def test_submit_model_accepts_each_kind_with_defaults() -> None:
    cases: tuple[tuple[JobKind, dict[str, Any]], ...] = (
        ("drive", {}),
        ("ingest", {"dataset": "ds_0123456789abcdef"}),
        ("train", {"dataset": "cut_ins@v2"}),
        ("eval", {"policy": "naive"}),
        ("loop", {}),
    )
    for kind, spec in cases:
        assert jobstore.validate_spec(kind, JobSubmit(kind=kind, spec=spec).spec)


def test_the_api_knows_the_same_job_kinds_as_the_store() -> None:
    from typing import get_args

    from dojo.service.constants import JOB_KINDS
    from dojo.service.specs import SPECS

    assert get_args(JobKind) == JOB_KINDS == tuple(SPECS)
