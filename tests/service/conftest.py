"""Fixtures: a fresh service per test on SQLite and on PostgreSQL (own schema per test)."""

from __future__ import annotations

import secrets
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():  # starlette 1.x nudges towards httpx2; httpx is what we ship
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from dojo.service.api import admin
from dojo.service.api.app import create_app
from dojo.service.config import MiB, ServiceConfig

PG_HOST, PG_PORT, PG_DB = "127.0.0.1", 5432, "test"
MCAP = b"\x89MCAP0\r\n" + b"drive-log-bytes" * 10  # the magic, then anything


def _pg_user() -> str | None:
    try:
        import psycopg
    except ImportError:
        return None
    for user in ("postgres", "root"):
        try:
            with psycopg.connect(
                host=PG_HOST, port=PG_PORT, user=user, dbname=PG_DB, connect_timeout=2
            ):
                return user
        except psycopg.Error:
            continue
    return None


_PG_USER: list[str | None] = []


def pg_user() -> str | None:
    if not _PG_USER:
        _PG_USER.append(_pg_user())
    return _PG_USER[0]


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A job store URL: a SQLite file, or a PostgreSQL schema of its own (dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobs.db'}"
        return
    user = pg_user()
    if user is None:
        pytest.skip(f"PostgreSQL is not reachable at {PG_HOST}:{PG_PORT} (database {PG_DB!r})")
    import psycopg

    schema = f"dojo_test_{secrets.token_hex(6)}"
    with psycopg.connect(
        host=PG_HOST, port=PG_PORT, user=user, dbname=PG_DB, autocommit=True
    ) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield (f"postgresql://{user}@{PG_HOST}:{PG_PORT}/{PG_DB}?options=-csearch_path%3D{schema}")
    finally:
        with psycopg.connect(
            host=PG_HOST, port=PG_PORT, user=user, dbname=PG_DB, autocommit=True
        ) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@dataclass
class Service:
    """A running app behind FastAPI's TestClient, with an admin token."""

    client: TestClient
    config: ServiceConfig
    admin: dict[str, str]
    tenants: dict[str, dict[str, Any]] = field(default_factory=dict)

    def tenant(self, name: str, **quotas: int) -> dict[str, str]:
        """A new tenant's auth headers."""
        r = self.client.post(
            "/v1/tenants", json={"name": name, "quotas": quotas}, headers=self.admin
        )
        assert r.status_code == 201, r.text
        self.tenants[name] = r.json()
        return {"Authorization": f"Bearer {r.json()['token']['token']}"}

    @property
    def data_dir(self) -> Path:
        return self.config.data_dir

    @property
    def ctx(self) -> Any:
        return self.client.app.state.ctx  # type: ignore[attr-defined]


def make_service(db_url: str, data_dir: Path, **overrides: Any) -> Iterator[Service]:
    settings: dict[str, Any] = {
        "max_json_bytes": 64 * 1024,
        "max_upload_bytes": 1 * MiB,
        "min_free_bytes": 0,
        "follow_poll_s": 0.02,
        **overrides,
    }
    config = ServiceConfig(db_url=db_url, data_dir=data_dir, **settings)
    app = create_app(config)
    token = admin.token_create(db_url, None, "test admin")
    with TestClient(app) as client:
        yield Service(client=client, config=config, admin={"Authorization": f"Bearer {token}"})
    app.state.ctx.db.dispose()


@pytest.fixture
def svc(db_url: str, tmp_path: Path) -> Iterator[Service]:
    yield from make_service(db_url, tmp_path / "data")


def upload(
    svc: Service, headers: dict[str, str], dataset_id: str, name: str, data: bytes = MCAP
) -> Any:
    return svc.client.post(
        f"/v1/datasets/{dataset_id}/files",
        params={"name": name},
        content=data,
        headers={**headers, "Content-Type": "application/octet-stream"},
    )


def files_under(root: Path) -> list[str]:
    """Every file below ``root``, relative, sorted (the database files left out)."""
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith("jobs.db")
    )
