"""Every endpoint that names a tenant object answers 404 to any other tenant, exactly as for an
object that does not exist, and changes nothing."""

from __future__ import annotations

import io
import re
import tarfile
from typing import Any

from .conftest import MCAP, Service, files_under, upload


def _a_world(svc: Service) -> tuple[dict[str, str], dict[str, str]]:
    """Tenant A with one of everything; returns A's headers and ids."""
    a = svc.tenant("alpha")
    c = svc.client
    ds = c.post("/v1/datasets", json={"name": "logs"}, headers=a).json()["id"]
    assert upload(svc, a, ds, "drive_1.mcap").status_code == 201
    job = c.post("/v1/jobs", json={"kind": "ingest", "spec": {"dataset": ds}}, headers=a).json()[
        "id"
    ]
    assert c.post(f"/v1/jobs/{job}/logs", content=b"hello\n", headers=a).status_code == 200
    assert (
        c.post(f"/v1/jobs/{job}/metrics", json={"rows": [{"step": 1}]}, headers=a).status_code
        == 200
    )
    model = c.post(
        f"/v1/jobs/{job}/checkpoints", params={"name": "step_1.pt"}, content=b"w" * 10, headers=a
    ).json()["id"]
    token = c.post("/v1/tokens", json={"name": "spare"}, headers=a).json()["id"]
    code = c.post(
        "/v1/code",
        params={"name": "trainer"},
        content=_code_archive(),
        headers={**a, "Content-Type": "application/octet-stream"},
    ).json()["id"]
    return a, {
        "dataset_id": ds,
        "job_id": job,
        "model_id": model,
        "token_id": token,
        "code_id": code,
    }


def _code_archive() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("train.py")
        info.size = 6
        tar.addfile(info, io.BytesIO(b"pass\n\n"))
    return buf.getvalue()


# (method, path, keyword arguments) for every tenant route that names an object
CALLS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/v1/datasets/{dataset_id}", {}),
    ("DELETE", "/v1/datasets/{dataset_id}", {}),
    ("GET", "/v1/datasets/{dataset_id}/files", {}),
    ("POST", "/v1/datasets/{dataset_id}/files", {"params": {"name": "x.mcap"}, "content": MCAP}),
    ("GET", "/v1/jobs/{job_id}", {}),
    ("POST", "/v1/jobs/{job_id}/cancel", {}),
    ("GET", "/v1/jobs/{job_id}/logs", {}),
    ("GET", "/v1/jobs/{job_id}/logs", {"params": {"follow": "true"}}),
    ("POST", "/v1/jobs/{job_id}/logs", {"content": b"injected\n"}),
    ("GET", "/v1/jobs/{job_id}/metrics", {}),
    ("POST", "/v1/jobs/{job_id}/metrics", {"json": {"rows": [{"step": 99}]}}),
    ("POST", "/v1/jobs/{job_id}/checkpoints", {"params": {"name": "evil.pt"}, "content": b"x"}),
    ("GET", "/v1/models/{model_id}", {}),
    ("GET", "/v1/models/{model_id}/download", {}),
    ("DELETE", "/v1/tokens/{token_id}", {}),
    ("GET", "/v1/code/{code_id}", {}),
    ("GET", "/v1/code/{code_id}/files", {}),
    ("DELETE", "/v1/code/{code_id}", {}),
]
ADMIN_PREFIX = "/v1/tenants"


def test_the_table_covers_every_route_that_names_an_object(svc: Service) -> None:
    paths = svc.client.get("/openapi.json").json()["paths"]
    routes = {
        (m.upper(), p)
        for p, ops in paths.items()
        for m in ops
        if "{" in p and not p.startswith(ADMIN_PREFIX)
    }
    assert routes == {(m, p) for m, p, _ in CALLS}


def test_another_tenants_objects_answer_404_everywhere(svc: Service) -> None:
    a, ids = _a_world(svc)
    b = svc.tenant("bravo")
    before_files = files_under(svc.data_dir)
    for method, path, kw in CALLS:
        real = svc.client.request(method, path.format(**ids), headers=b, **kw)
        fake_ids = {k: re.sub(r"_[0-9a-f]+$", "_0123456789abcdef", v) for k, v in ids.items()}
        fake = svc.client.request(method, path.format(**fake_ids), headers=b, **kw)
        assert real.status_code == 404, (method, path, real.status_code, real.text)
        assert fake.status_code == 404, (method, path, fake.text)
        # the same answer as for an object that does not exist: no oracle
        assert real.json()["detail"].replace(
            next(v for v in ids.values() if v in real.json()["detail"]), "ID"
        ) == fake.json()["detail"].replace(
            next(v for v in fake_ids.values() if v in fake.json()["detail"]), "ID"
        )
    # nothing of A's changed
    c = svc.client
    assert files_under(svc.data_dir) == before_files
    assert c.get(f"/v1/jobs/{ids['job_id']}", headers=a).json()["status"] == "queued"
    assert c.get(f"/v1/jobs/{ids['job_id']}/logs", headers=a).content == b"hello\n"
    assert [
        r["step"] for r in c.get(f"/v1/jobs/{ids['job_id']}/metrics", headers=a).json()["rows"]
    ] == [1]
    assert c.get(f"/v1/datasets/{ids['dataset_id']}", headers=a).json()["files"] == 1
    assert c.get(f"/v1/models/{ids['model_id']}", headers=a).status_code == 200
    assert len(c.get("/v1/tokens", headers=a).json()) == 2
    assert all(t["revoked_at"] is None for t in c.get("/v1/tokens", headers=a).json())


def test_lists_show_only_the_callers_objects(svc: Service) -> None:
    _, ids = _a_world(svc)
    b = svc.tenant("bravo")
    c = svc.client
    assert c.get("/v1/jobs", headers=b).json() == {"jobs": [], "total": 0}
    assert c.get("/v1/datasets", headers=b).json() == []
    assert c.get("/v1/models", headers=b).json() == []
    assert c.get("/v1/models", params={"job_id": ids["job_id"]}, headers=b).json() == []
    assert len(c.get("/v1/tokens", headers=b).json()) == 1
    me = c.get("/v1/me", headers=b).json()
    assert me["usage"] == {"active_jobs": 0, "chips": 0, "gpus": 0, "storage_bytes": 0}


def test_a_job_cannot_name_another_tenants_dataset_or_model(svc: Service) -> None:
    _, ids = _a_world(svc)
    b = svc.tenant("bravo")
    for kind, spec in (
        ("ingest", {"dataset": ids["dataset_id"]}),
        ("eval", {"policy": ids["model_id"]}),
        ("train", {"dataset": "logs", "resume_from": ids["model_id"]}),
    ):
        r = svc.client.post("/v1/jobs", json={"kind": kind, "spec": spec}, headers=b)
        assert r.status_code == 404, (kind, r.text)
    assert svc.client.get("/v1/jobs", headers=b).json()["total"] == 0
