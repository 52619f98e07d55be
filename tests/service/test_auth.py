"""Tokens (hashed, shown once, expiring, revocable) and roles."""

from __future__ import annotations

import hashlib
import time

from sqlalchemy import select, text

from dojo.service.store.schema import Token

from .conftest import Service


def test_requests_without_a_valid_token_get_401(svc: Service) -> None:
    c = svc.client
    for headers in (
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer "},
    ):
        r = c.get("/v1/jobs", headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.json()["detail"]


def test_tokens_are_stored_only_as_hashes_and_shown_once(svc: Service) -> None:
    headers = svc.tenant("acme")
    secret = headers["Authorization"].split()[1]
    assert secret.startswith("dojo_") and len(secret) > 40
    extra = svc.client.post("/v1/tokens", json={"name": "ci"}, headers=headers)
    assert extra.status_code == 201
    second = extra.json()["token"]
    listed = svc.client.get("/v1/tokens", headers=headers).json()
    assert len(listed) == 2 and all("token" not in t for t in listed)
    with svc.ctx.db.session() as s:
        hashes = {t.hash for t in s.scalars(select(Token))}
        dump = repr([tuple(r) for r in s.execute(text("SELECT * FROM tokens"))])
    for sec in (secret, second):
        assert hashlib.sha256(sec.encode()).hexdigest() in hashes
        assert sec not in dump and sec[len("dojo_") :] not in dump
    assert (
        svc.client.get("/v1/me", headers={"Authorization": f"Bearer {second}"}).status_code == 200
    )


def test_a_revoked_token_stops_working(svc: Service) -> None:
    headers = svc.tenant("acme")
    new = svc.client.post("/v1/tokens", json={}, headers=headers).json()
    other = {"Authorization": f"Bearer {new['token']}"}
    assert svc.client.get("/v1/me", headers=other).status_code == 200
    assert svc.client.delete(f"/v1/tokens/{new['id']}", headers=headers).json()["revoked_at"]
    assert svc.client.get("/v1/me", headers=other).status_code == 401
    assert svc.client.get("/v1/me", headers=headers).status_code == 200


def test_an_expired_token_gets_401_saying_so(svc: Service) -> None:
    headers = svc.tenant("acme")
    short = svc.client.post("/v1/tokens", json={"expires_in_s": 0.05}, headers=headers).json()
    time.sleep(0.1)
    r = svc.client.get("/v1/me", headers={"Authorization": f"Bearer {short['token']}"})
    assert r.status_code == 401 and "expired" in r.json()["detail"]


def test_roles_admin_manages_tenants_and_tenants_own_objects(svc: Service) -> None:
    headers = svc.tenant("acme")
    assert svc.client.get("/v1/tenants", headers=headers).status_code == 403
    assert svc.client.post("/v1/tenants", json={"name": "evil"}, headers=headers).status_code == 403
    assert svc.client.get("/v1/jobs", headers=svc.admin).status_code == 403
    listed = svc.client.get("/v1/tenants", headers=svc.admin).json()
    assert [t["name"] for t in listed] == ["acme"]


def test_admin_sets_quotas_and_disables_tenants(svc: Service) -> None:
    headers = svc.tenant("acme", max_gpus=4)
    me = svc.client.get("/v1/me", headers=headers).json()
    assert me["quotas"]["max_gpus"] == 4
    r = svc.client.patch("/v1/tenants/acme", json={"quotas": {"max_gpus": 16}}, headers=svc.admin)
    assert r.status_code == 200 and r.json()["quotas"]["max_gpus"] == 16
    assert r.json()["quotas"]["max_chips"] == me["quotas"]["max_chips"]  # untouched
    svc.client.patch(f"/v1/tenants/{me['id']}", json={"disabled": True}, headers=svc.admin)
    r = svc.client.get("/v1/me", headers=headers)
    assert r.status_code == 403 and "disabled" in r.json()["detail"]
    assert (
        svc.client.post("/v1/tenants", json={"name": "acme"}, headers=svc.admin).status_code == 409
    )
    bad = svc.client.patch("/v1/tenants/acme", json={"quotas": {"max_gpus": -1}}, headers=svc.admin)
    assert bad.status_code == 422
    token = svc.client.post("/v1/tenants/acme/tokens", json={"name": "x"}, headers=svc.admin)
    assert token.status_code == 201 and token.json()["token"].startswith("dojo_")


def test_openapi_spec_is_served(svc: Service) -> None:
    spec = svc.client.get("/openapi.json").json()
    assert {
        "/v1/jobs",
        "/v1/datasets/{dataset_id}/files",
        "/v1/models/{model_id}/download",
        "/v1/jobs/{job_id}/logs",
        "/v1/tenants",
    } <= set(spec["paths"])
    assert svc.client.get("/healthz").json()["ok"] is True
