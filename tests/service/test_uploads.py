"""Datasets and models: uploads land only in the tenant's folder, whole or not at all."""

from __future__ import annotations

import errno
import hashlib
from pathlib import Path

import pytest

from dojo.service.store import storage

from .conftest import MCAP, Service, files_under, make_service, upload


def _dataset(svc: Service, h: dict[str, str], name: str = "logs") -> str:
    r = svc.client.post("/v1/datasets", json={"name": name}, headers=h)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_upload_list_and_never_replace(svc: Service) -> None:
    h = svc.tenant("acme")
    ds = _dataset(svc, h)
    r = upload(svc, h, ds, "drive_0001.mcap")
    assert r.status_code == 201 and r.json()["sha256"] == hashlib.sha256(MCAP).hexdigest()
    assert upload(svc, h, ds, "m\u00fcnchen-2.mcap").status_code == 201  # unicode letters are fine
    tenant = svc.tenants["acme"]["id"]
    assert files_under(svc.data_dir) == [
        f"tenants/{tenant}/datasets/{ds}/drive_0001.mcap",
        f"tenants/{tenant}/datasets/{ds}/m\u00fcnchen-2.mcap",
    ]
    dup = upload(svc, h, ds, "drive_0001.mcap", MCAP + b"other")
    assert dup.status_code == 409
    stored = svc.data_dir / f"tenants/{tenant}/datasets/{ds}/drive_0001.mcap"
    assert stored.read_bytes() == MCAP
    info = svc.client.get(f"/v1/datasets/{ds}", headers=h).json()
    assert info["files"] == 2 and info["size_bytes"] == 2 * len(MCAP)
    assert [f["name"] for f in svc.client.get(f"/v1/datasets/{ds}/files", headers=h).json()] == [
        "drive_0001.mcap",
        "m\u00fcnchen-2.mcap",
    ]
    assert svc.client.get("/v1/me", headers=h).json()["usage"]["storage_bytes"] == 2 * len(MCAP)
    assert svc.client.post("/v1/datasets", json={"name": "logs"}, headers=h).status_code == 409


HOSTILE = [
    "../escape.mcap",
    "../../../../etc/passwd",
    "/etc/passwd",
    "/tmp/abs.mcap",
    "a/b.mcap",
    "a\\b.mcap",
    "..",
    ".",
    "",
    "x\x00.mcap",
    "x\n.mcap",
    ".hidden.mcap",
    "C:evil.mcap",
    "a" * 256 + ".mcap",
    "\u00e9" * 130,  # 260 bytes of UTF-8
    "\uff0e\uff0e\uff0fx.mcap",  # fullwidth ../
    "..\u2215x.mcap",  # division slash
    "\u202egpj.mcap",  # right-to-left override
    "e\u0301.mcap",  # not NFC
    "x\u200b.mcap",  # zero-width space
    "con sole.mcap",  # space
]


def test_hostile_file_names_are_refused_and_write_nothing(svc: Service) -> None:
    h = svc.tenant("acme")
    ds = _dataset(svc, h)
    job = svc.client.post("/v1/jobs", json={"kind": "drive"}, headers=h).json()["id"]
    before = files_under(svc.data_dir.parent)
    for name in HOSTILE:
        r = upload(svc, h, ds, name)
        assert r.status_code == 422, (name, r.status_code, r.text)
        assert "name" in r.json()["detail"].lower(), (name, r.text)
        r = svc.client.post(
            f"/v1/jobs/{job}/checkpoints", params={"name": name}, content=b"w", headers=h
        )
        assert r.status_code == 422, (name, r.text)
    assert files_under(svc.data_dir.parent) == before
    assert svc.client.get(f"/v1/datasets/{ds}", headers=h).json()["files"] == 0
    assert svc.client.get("/v1/models", headers=h).json() == []


def test_only_mcap_files_are_accepted(svc: Service) -> None:
    h = svc.tenant("acme")
    ds = _dataset(svc, h)
    for data in (b"PK\x03\x04zipfile", b"\x89MCA", b""):
        r = upload(svc, h, ds, "x.mcap", data)
        assert r.status_code == 422 and "MCAP" in r.json()["detail"]
    assert files_under(svc.data_dir) == []


def test_uploads_over_the_size_limit_get_413_and_leave_nothing(svc: Service) -> None:
    h = svc.tenant("acme")
    ds = _dataset(svc, h)
    big = MCAP + b"x" * (svc.config.max_upload_bytes + 1)
    r = upload(svc, h, ds, "big.mcap", big)  # Content-Length says it all
    assert r.status_code == 413

    def chunked():
        for i in range(0, len(big), 64 * 1024):
            yield big[i : i + 64 * 1024]

    r = svc.client.post(
        f"/v1/datasets/{ds}/files",
        params={"name": "big.mcap"},
        content=chunked(),
        headers={**h, "Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    assert files_under(svc.data_dir) == []
    assert svc.client.get(f"/v1/datasets/{ds}", headers=h).json()["size_bytes"] == 0


def test_storage_quota_is_enforced_with_403(svc: Service) -> None:
    h = svc.tenant("acme", max_storage_bytes=2 * len(MCAP) + 10)
    ds = _dataset(svc, h)
    assert upload(svc, h, ds, "a.mcap").status_code == 201
    assert upload(svc, h, ds, "b.mcap").status_code == 201
    r = upload(svc, h, ds, "c.mcap")
    assert r.status_code == 403 and r.json()["quota"] == "max_storage_bytes"
    job = svc.client.post("/v1/jobs", json={"kind": "drive"}, headers=h).json()["id"]

    def chunked():
        yield b"w" * 8
        yield b"w" * 8

    r = svc.client.post(
        f"/v1/jobs/{job}/checkpoints", params={"name": "c.pt"}, content=chunked(), headers=h
    )
    assert r.status_code == 403 and r.json()["code"] == "quota_exceeded"
    tenant = svc.tenants["acme"]["id"]
    assert files_under(svc.data_dir) == [
        f"tenants/{tenant}/datasets/{ds}/a.mcap",
        f"tenants/{tenant}/datasets/{ds}/b.mcap",
    ]
    assert svc.client.delete(f"/v1/datasets/{ds}", headers=h).status_code == 204
    assert files_under(svc.data_dir) == []
    assert svc.client.get("/v1/me", headers=h).json()["usage"]["storage_bytes"] == 0


def test_a_full_disk_fails_the_upload_cleanly(
    svc: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = svc.tenant("acme")
    ds = _dataset(svc, h)
    assert upload(svc, h, ds, "keep.mcap").status_code == 201
    before = {p: p.read_bytes() for p in svc.data_dir.rglob("*.mcap")}
    written = []

    def full(f, chunk):  # the disk fills half way through the write
        f.write(chunk[: len(chunk) // 2])
        f.flush()
        written.append(Path(f.name).stat().st_size)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage, "_write", full)
    r = svc.client.post(
        f"/v1/datasets/{ds}/files",
        params={"name": "new.mcap"},
        content=iter([MCAP, b"x" * 1000, b"y" * 1000]),
        headers=h,
    )
    assert r.status_code == 507 and "disk is full" in r.json()["detail"]
    assert written and written[0] > 0  # it really started writing
    assert {p: p.read_bytes() for p in svc.data_dir.rglob("*.mcap")} == before
    assert not [p for p in svc.data_dir.rglob("*") if p.name.startswith(".upload-")]
    info = svc.client.get(f"/v1/datasets/{ds}", headers=h).json()
    assert info["files"] == 1 and info["size_bytes"] == len(MCAP)


def test_uploads_stop_before_the_disk_reserve(db_url: str, tmp_path: Path) -> None:
    for svc in make_service(db_url, tmp_path / "d", min_free_bytes=2**62):
        h = svc.tenant("acme")
        ds = _dataset(svc, h)
        r = upload(svc, h, ds, "x.mcap")
        assert r.status_code == 507 and "nearly full" in r.json()["detail"]
        assert files_under(svc.data_dir) == []


def test_registered_stores_must_be_remote(svc: Service) -> None:
    h = svc.tenant("acme")
    r = svc.client.post(
        "/v1/datasets", json={"name": "fleet", "uri": "s3://bucket/fleet/"}, headers=h
    )
    assert r.status_code == 201 and r.json()["source"] == "store"
    assert upload(svc, h, r.json()["id"], "x.mcap").status_code == 409
    for uri in ("file:///etc", "/etc", "../other", "s3://", "ftp://x/y", "https:///nohost"):
        bad = svc.client.post("/v1/datasets", json={"name": "x", "uri": uri}, headers=h)
        assert bad.status_code == 422, uri


def test_a_dataset_in_use_is_not_deleted(svc: Service) -> None:
    h = svc.tenant("acme")
    ds = _dataset(svc, h)
    upload(svc, h, ds, "a.mcap")
    job = svc.client.post(
        "/v1/jobs", json={"kind": "ingest", "spec": {"dataset": ds}}, headers=h
    ).json()
    r = svc.client.delete(f"/v1/datasets/{ds}", headers=h)
    assert r.status_code == 409
    svc.client.post(f"/v1/jobs/{job['id']}/cancel", headers=h)
    assert svc.client.delete(f"/v1/datasets/{ds}", headers=h).status_code == 204
    assert svc.client.get(f"/v1/datasets/{ds}", headers=h).status_code == 404


def test_checkpoints_become_models_to_list_and_download(svc: Service) -> None:
    h = svc.tenant("acme")
    job = svc.client.post(
        "/v1/jobs", json={"kind": "train", "spec": {"dataset": "cuts@v1"}}, headers=h
    ).json()["id"]
    weights = bytes(range(256)) * 100
    r = svc.client.post(
        f"/v1/jobs/{job}/checkpoints", params={"name": "step_100.pt"}, content=weights, headers=h
    )
    assert r.status_code == 201, r.text
    model = r.json()
    assert model["size_bytes"] == len(weights) and model["job_id"] == job
    assert (
        svc.client.post(
            f"/v1/jobs/{job}/checkpoints", params={"name": "step_100.pt"}, content=b"x", headers=h
        ).status_code
        == 409
    )
    assert [m["id"] for m in svc.client.get("/v1/models", headers=h).json()] == [model["id"]]
    got = svc.client.get(f"/v1/models/{model['id']}/download", headers=h)
    assert got.status_code == 200 and got.content == weights
    assert got.headers["x-sha256"] == hashlib.sha256(weights).hexdigest()
    # the model can now drive an evaluation
    ev = svc.client.post(
        "/v1/jobs", json={"kind": "eval", "spec": {"policy": model["id"]}}, headers=h
    )
    assert ev.status_code == 201
