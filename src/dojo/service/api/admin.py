"""Operator actions straight on the job store (no server needed): bootstrap tenants and tokens."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from dojo.errors import DojoConfigError
from dojo.service.api.auth import issue_token
from dojo.service.api.models import QuotasIn, TenantCreate
from dojo.service.api.problems import ApiError
from dojo.service.config import Quotas
from dojo.service.store.db import Database
from dojo.service.store.schema import Tenant
from dojo.service.store.tenants import create_tenant, set_quotas, tenant_by_ref, tenant_out


def _open(db_url: str) -> Database:
    db = Database(db_url)
    db.migrate()
    return db


def _quotas(values: dict[str, int | None]) -> QuotasIn:
    for key, value in values.items():
        if value is not None and value < 0:
            raise DojoConfigError(f"--{key.replace('_', '-')} {value} must be >= 0.")
    return QuotasIn(**values)


def tenant_create(db_url: str, name: str, quotas: dict[str, int | None]) -> dict[str, Any]:
    """A new tenant and its first token; the token is in the result and nowhere else."""
    try:
        TenantCreate(name=name)
    except ValueError:
        raise DojoConfigError(
            f"Tenant name {name!r} must be 1-64 letters, digits or '._-', "
            "starting with a letter or digit."
        ) from None
    db = _open(db_url)
    try:
        with db.session() as s:
            tenant, _, secret = create_tenant(s, name, _quotas(quotas), Quotas())
            return {**tenant_out(s, tenant).model_dump(mode="json"), "token": secret}
    except ApiError as e:
        raise DojoConfigError(e.detail) from None
    finally:
        db.dispose()


def tenant_list(db_url: str) -> list[dict[str, Any]]:
    db = _open(db_url)
    try:
        with db.session() as s:
            return [
                tenant_out(s, t).model_dump(mode="json")
                for t in s.scalars(select(Tenant).order_by(Tenant.name))
            ]
    finally:
        db.dispose()


def tenant_update(
    db_url: str, ref: str, quotas: dict[str, int | None], disabled: bool | None
) -> dict[str, Any]:
    db = _open(db_url)
    try:
        with db.session() as s:
            tenant = tenant_by_ref(s, ref)
            set_quotas(tenant, _quotas(quotas))
            if disabled is not None:
                tenant.disabled = disabled
            s.flush()
            return tenant_out(s, tenant).model_dump(mode="json")
    except ApiError as e:
        raise DojoConfigError(e.detail) from None
    finally:
        db.dispose()


def token_create(db_url: str, tenant: str | None, name: str) -> str:
    """A new token for ``tenant`` (id or name), or an admin token when ``tenant`` is None."""
    db = _open(db_url)
    try:
        with db.session() as s:
            tenant_id = tenant_by_ref(s, tenant).id if tenant is not None else None
            _, secret = issue_token(
                s, role="tenant" if tenant_id else "admin", tenant_id=tenant_id, name=name
            )
            return secret
    except ApiError as e:
        raise DojoConfigError(e.detail) from None
    finally:
        db.dispose()
