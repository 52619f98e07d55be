"""Jobs through the HTTP API: submit, validation, quotas, cancel, logs (and follow), metrics."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from dojo.service.store import jobstore

from .conftest import Service


def _submit(svc: Service, headers: dict[str, str], **body: object):
    return svc.client.post(
        "/v1/jobs", json={"kind": "eval", "spec": {"policy": "expert"}, **body}, headers=headers
    )


def test_submit_show_list_and_cancel(svc: Service) -> None:
    h = svc.tenant("acme")
    r = _submit(svc, h, name="nightly", priority=7, compute={"tiles": 2})
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["status"] == "queued" and job["compute"] == {"tiles": 2} and job["priority"] == 7
    assert job["spec"] == {
        "policy": "expert",
        "suite": "heldout",
        "decisions": 10000,
        "cars": 16,
        "seed": None,
    }  # defaults filled in
    assert svc.client.get(f"/v1/jobs/{job['id']}", headers=h).json()["name"] == "nightly"
    second = _submit(
        svc, h, kind="drive", spec={"cars": 4, "mode": "mixed"}, compute={"gpus": 1}
    ).json()
    listed = svc.client.get("/v1/jobs", headers=h).json()
    assert listed["total"] == 2 and [j["id"] for j in listed["jobs"]] == [second["id"], job["id"]]
    assert svc.client.get("/v1/jobs", params={"kind": "drive"}, headers=h).json()["total"] == 1
    r = svc.client.post(f"/v1/jobs/{job['id']}/cancel", headers=h)
    assert r.status_code == 200 and r.json()["status"] == "cancelled" and r.json()["finished_at"]
    again = svc.client.post(f"/v1/jobs/{job['id']}/cancel", headers=h)
    assert again.status_code == 409 and "already cancelled" in again.json()["detail"]
    assert (
        svc.client.get("/v1/jobs", params={"status": "queued,running"}, headers=h).json()["total"]
        == 1
    )
    assert svc.client.get("/v1/jobs", params={"status": "bogus"}, headers=h).status_code == 422


def test_cancelling_a_running_job_asks_its_agent(svc: Service) -> None:
    h = svc.tenant("acme")
    job_id = _submit(svc, h).json()["id"]
    with svc.ctx.db.session() as s:
        assert jobstore.claim_next(s, "host-a") is not None
    assert svc.client.post(f"/v1/jobs/{job_id}/cancel", headers=h).json()["status"] == "cancelling"
    with svc.ctx.db.session() as s:
        assert jobstore.heartbeat(s, job_id, "host-a") == "cancelling"
        assert jobstore.finish(s, job_id, "host-a", status="cancelled")
    assert svc.client.get(f"/v1/jobs/{job_id}", headers=h).json()["status"] == "cancelled"


BAD_SUBMISSIONS = [
    ({"kind": "fly", "spec": {}}, "kind"),
    ({"spec": {}}, "kind"),
    ({"kind": "eval"}, "policy"),  # the eval spec needs a policy
    ({"kind": "eval", "spec": {"policy": "expert", "decisions": "many"}}, "decisions"),
    ({"kind": "eval", "spec": {"policy": "expert", "decisions": 0}}, "decisions"),
    ({"kind": "eval", "spec": {"policy": "expert", "colour": "red"}}, "colour"),
    ({"kind": "eval", "spec": {"policy": "../../ckpt.pt"}}, "policy"),
    ({"kind": "drive", "spec": {"mode": "warp"}}, "mode"),
    ({"kind": "train", "spec": {"dataset": "x; DROP TABLE jobs"}}, "dataset"),
    (
        {"kind": "eval", "spec": {"policy": "expert"}, "compute": {"chips": 1, "gpus": 1}},
        "exactly one",
    ),
    ({"kind": "eval", "spec": {"policy": "expert"}, "compute": {"tiles": 0}}, "tiles"),
    ({"kind": "eval", "spec": {"policy": "expert"}, "priority": "high"}, "priority"),
    ({"kind": "eval", "spec": {"policy": "expert"}, "owner": "root"}, "owner"),
    ({"kind": "eval", "spec": ["policy"]}, "spec"),
    ({"kind": "eval", "spec": {"policy": "expert"}, "time_limit_s": 0}, "time_limit_s"),
    ({"kind": "eval", "spec": {"policy": "expert"}, "time_limit_s": 10**12}, "time_limit_s"),
    ({"kind": "eval", "spec": {"policy": "expert"}, "time_limit_s": "1h"}, "time_limit_s"),
    ([1, 2, 3], "body"),
]


def test_bad_job_submissions_get_422_naming_the_problem(svc: Service) -> None:
    h = svc.tenant("acme")
    for body, words in BAD_SUBMISSIONS:
        r = svc.client.post("/v1/jobs", json=body, headers=h)
        assert r.status_code == 422, (body, r.text)
        assert words in r.text, (body, r.text)
    for raw in (b"{", b"not json", b'{"kind": "eval",}', b"\xff\xfe", b""):
        r = svc.client.post(
            "/v1/jobs", content=raw, headers={**h, "Content-Type": "application/json"}
        )
        assert r.status_code == 422 and r.json()["detail"], raw
    assert svc.client.get("/v1/jobs", headers=h).json()["total"] == 0


def test_a_time_limit_is_kept_and_shown(svc: Service) -> None:
    h = svc.tenant("acme")
    r = svc.client.post(
        "/v1/jobs",
        json={"kind": "eval", "spec": {"policy": "naive"}, "time_limit_s": 3600},
        headers=h,
    )
    assert r.status_code == 201 and r.json()["time_limit_s"] == 3600
    assert svc.client.get(f"/v1/jobs/{r.json()['id']}", headers=h).json()["time_limit_s"] == 3600
    r = svc.client.post("/v1/jobs", json={"kind": "eval", "spec": {"policy": "naive"}}, headers=h)
    assert r.json()["time_limit_s"] is None  # no limit unless asked


def test_oversized_bodies_get_413_with_or_without_a_length(svc: Service) -> None:
    h = svc.tenant("acme")
    big = b'{"kind": "eval", "spec": {"policy": "expert"}, "name": "' + b"x" * 100_000 + b'"}'
    r = svc.client.post("/v1/jobs", content=big, headers={**h, "Content-Type": "application/json"})
    assert r.status_code == 413 and "limit" in r.json()["detail"]

    def chunks():
        for i in range(0, len(big), 8192):
            yield big[i : i + 8192]

    r = svc.client.post(
        "/v1/jobs", content=chunks(), headers={**h, "Content-Type": "application/json"}
    )
    assert r.status_code == 413
    small = b'{"kind": "eval", "spec": {"policy": "expert"}}'
    r = svc.client.post(
        "/v1/jobs",
        content=iter([small[:10], small[10:]]),
        headers={**h, "Content-Type": "application/json"},
    )
    assert r.status_code == 201, r.text  # chunked and small: fine
    assert svc.client.get("/v1/jobs", headers=h).json()["total"] == 1


def test_quotas_on_concurrent_jobs_chips_and_gpus(svc: Service) -> None:
    h = svc.tenant("acme", max_concurrent_jobs=3, max_chips=60, max_gpus=8)
    assert _submit(svc, h, compute={"tiles": 2}).status_code == 201  # 50 chips
    r = _submit(svc, h, compute={"chips": 11})
    assert r.status_code == 403 and r.json()["quota"] == "max_chips"
    assert "50 chips in use + 11 asked > limit 60" in r.json()["detail"]
    assert _submit(svc, h, compute={"chips": 10}).status_code == 201
    r = _submit(svc, h, compute={"gpus": 9})
    assert r.status_code == 403 and r.json()["quota"] == "max_gpus"
    third = _submit(svc, h, compute={"gpus": 8})
    assert third.status_code == 201
    r = _submit(svc, h, compute={"gpus": 1})
    assert r.status_code == 403 and r.json()["quota"] == "max_concurrent_jobs"
    svc.client.post(f"/v1/jobs/{third.json()['id']}/cancel", headers=h)  # frees its slot and GPUs
    assert _submit(svc, h, compute={"gpus": 1}).status_code == 201
    assert svc.client.get("/v1/me", headers=h).json()["usage"] == {
        "active_jobs": 3,
        "chips": 60,
        "gpus": 1,
        "storage_bytes": 0,
    }


def test_concurrent_submissions_never_overshoot_the_quota(svc: Service) -> None:
    h = svc.tenant("acme", max_concurrent_jobs=5)
    codes: list[int] = []

    def go() -> None:
        codes.append(_submit(svc, h).status_code)

    threads = [threading.Thread(target=go) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [201] * 5 + [403] * 7
    assert svc.client.get("/v1/jobs", headers=h).json()["total"] == 5


def test_logs_by_offset_and_closed_when_the_job_ends(svc: Service) -> None:
    h = svc.tenant("acme")
    job = _submit(svc, h).json()["id"]
    for line in (b"step 1\n", b"step 2\n", "\u00fcber 3\n".encode()):
        assert svc.client.post(f"/v1/jobs/{job}/logs", content=line, headers=h).status_code == 200
    r = svc.client.get(f"/v1/jobs/{job}/logs", headers=h)
    assert (
        r.content == "step 1\nstep 2\n\u00fcber 3\n".encode()
        and r.headers["x-job-status"] == "queued"
    )
    r = svc.client.get(f"/v1/jobs/{job}/logs", params={"offset": 3}, headers=h)
    assert r.content == b"p 1\nstep 2\n\xc3\xbcber 3\n" and int(r.headers["x-log-offset"]) == 22
    assert svc.client.get(f"/v1/jobs/{job}/logs", params={"offset": 22}, headers=h).content == b""
    assert (
        svc.client.get(f"/v1/jobs/{job}/logs", params={"offset": -1}, headers=h).status_code == 422
    )
    svc.client.post(f"/v1/jobs/{job}/cancel", headers=h)
    r = svc.client.post(f"/v1/jobs/{job}/logs", content=b"late\n", headers=h)
    assert r.status_code == 409 and "closed" in r.json()["detail"]


def test_follow_streams_new_lines_until_the_job_ends(svc: Service) -> None:
    h = svc.tenant("acme")
    job = _submit(svc, h).json()["id"]
    with svc.ctx.db.session() as s:
        assert jobstore.claim_next(s, "host-a") is not None
    svc.client.post(f"/v1/jobs/{job}/logs", content=b"start\n", headers=h)

    def runner() -> None:
        for i in range(3):
            time.sleep(0.05)
            with svc.ctx.db.session() as s:
                row = jobstore.get(s, svc.tenants["acme"]["id"], job, lock=True)
                jobstore.append_log(s, row, f"line {i}\n".encode(), 1 << 20)
        with svc.ctx.db.session() as s:
            jobstore.finish(s, job, "host-a", status="succeeded", exit_code=0)

    t = threading.Thread(target=runner)
    t.start()
    started = time.monotonic()
    with svc.client.stream(
        "GET", f"/v1/jobs/{job}/logs", params={"follow": "true"}, headers=h
    ) as r:
        assert r.status_code == 200
        body = b"".join(r.iter_bytes())
    t.join()
    assert body == b"start\nline 0\nline 1\nline 2\n"
    assert time.monotonic() - started < 10


def test_a_job_log_has_a_size_limit(db_url: str, tmp_path) -> None:
    from .conftest import make_service

    for svc in make_service(db_url, tmp_path / "d", max_log_bytes_per_job=10):
        h = svc.tenant("acme")
        job = _submit(svc, h).json()["id"]
        assert (
            svc.client.post(f"/v1/jobs/{job}/logs", content=b"123456", headers=h).status_code == 200
        )
        r = svc.client.post(f"/v1/jobs/{job}/logs", content=b"78901", headers=h)
        assert r.status_code == 413
        assert svc.client.get(f"/v1/jobs/{job}/logs", headers=h).content == b"123456"


def test_metrics_rows_are_appended_and_read_back_in_order(svc: Service) -> None:
    h = svc.tenant("acme")
    job = _submit(svc, h).json()["id"]
    rows = [{"step": i, "loss": 1.0 / (i + 1), "phase": "train"} for i in range(5)]
    r = svc.client.post(f"/v1/jobs/{job}/metrics", json={"rows": rows[:3]}, headers=h)
    assert r.json() == {"metric_rows": 3}
    svc.client.post(f"/v1/jobs/{job}/metrics", json={"rows": rows[3:]}, headers=h)
    out = svc.client.get(f"/v1/jobs/{job}/metrics", headers=h).json()
    assert [r["step"] for r in out["rows"]] == [0, 1, 2, 3, 4] and out["next_seq"] == 5
    assert out["rows"][1]["loss"] == pytest.approx(0.5)
    newer = svc.client.get(f"/v1/jobs/{job}/metrics", params={"after": 3}, headers=h).json()
    assert [r["seq"] for r in newer["rows"]] == [4, 5]
    bodies: list[dict[str, Any]] = [
        {"rows": []},
        {"rows": [{"loss": [1, 2]}]},
        {"rows": [{"x" * 100: 1}]},
        {"rows": "x"},
        {},
    ]
    for bad in bodies:
        assert svc.client.post(f"/v1/jobs/{job}/metrics", json=bad, headers=h).status_code == 422, (
            bad
        )
    assert svc.client.get(f"/v1/jobs/{job}", headers=h).json()["metric_rows"] == 5


def test_odd_values_get_4xx_never_a_server_error(svc: Service) -> None:
    h = svc.tenant("acme")
    job = _submit(svc, h).json()["id"]
    nan = b'{"rows": [{"loss": NaN}]}'
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/v1/jobs/%00", {}),
        ("GET", "/v1/models", {"params": {"job_id": "\x00"}}),
        ("POST", "/v1/jobs", {"json": {"kind": "drive", "name": "a\x00b"}}),
        (
            "POST",
            f"/v1/jobs/{job}/metrics",
            {"content": nan, "headers": {"Content-Type": "application/json"}},
        ),
        ("POST", f"/v1/jobs/{job}/metrics", {"json": {"rows": [{"k": "v\x00"}]}}),
        ("POST", f"/v1/jobs/{job}/metrics", {"json": {"rows": [{"k\x00": 1}]}}),
        ("GET", f"/v1/jobs/{job}/metrics", {"params": {"after": 2**31}}),
        ("GET", f"/v1/jobs/{job}/logs", {"params": {"offset": 2**63}}),
        ("POST", "/v1/tokens", {"json": {"name": "\x00"}}),
        ("DELETE", "/v1/tokens/%00", {}),
        ("GET", "/v1/datasets/%00/files", {}),
        ("POST", "/v1/datasets", {"json": {"name": "x", "uri": "s3://b/\x00"}}),
        ("POST", "/v1/jobs", {"json": {"kind": "drive", "priority": 2**70}}),
        ("POST", "/v1/jobs", {"json": {"kind": "drive", "compute": {"gpus": 2**40}}}),
        (
            "POST",
            "/v1/jobs",
            {
                "content": b'{"kind": "drive", "spec": {"minutes": Infinity}}',
                "headers": {"Content-Type": "application/json"},
            },
        ),
        ("GET", "/v1/jobs", {"params": {"limit": 10**12}}),
        ("PATCH", "/v1/tenants/acme", {"json": {"quotas": {"max_chips": 2**63}}}),
    ]
    for method, path, kw in calls:
        headers = {**(svc.admin if path.startswith("/v1/tenants") else h), **kw.pop("headers", {})}
        r = svc.client.request(method, path, headers=headers, **kw)
        assert r.status_code < 500, (method, path, r.status_code, r.text)
    assert svc.client.get(f"/v1/jobs/{job}", headers=h).json()["metric_rows"] == 0
