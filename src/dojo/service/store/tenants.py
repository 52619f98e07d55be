"""Tenants, their quotas and what they use."""

from __future__ import annotations

from sqlalchemy import BindParameter, bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dojo.service.api.auth import issue_token, new_id
from dojo.service.api.models import Quotas, QuotasIn, TenantOut, TokenCreated, TokenOut, Usage
from dojo.service.api.problems import ApiError, not_found
from dojo.service.config import Quotas as DefaultQuotas
from dojo.service.constants import ACTIVE
from dojo.service.store.schema import (
    CodeArchive,
    Dataset,
    Job,
    Model,
    StorageChange,
    Tenant,
    Token,
)


def create_tenant(
    s: Session, name: str, quotas: QuotasIn, defaults: DefaultQuotas
) -> tuple[Tenant, Token, str]:
    """A new tenant and its first token (secret returned once)."""
    if s.scalar(select(Tenant.id).where(Tenant.name == name)) is not None:
        raise ApiError(409, f"Tenant {name!r} already exists.")
    tenant = Tenant(
        id=new_id("ten"),
        name=name,
        disabled=False,
        max_concurrent_jobs=_pick(quotas.max_concurrent_jobs, defaults.max_concurrent_jobs),
        max_chips=_pick(quotas.max_chips, defaults.max_chips),
        max_gpus=_pick(quotas.max_gpus, defaults.max_gpus),
        max_storage_bytes=_pick(quotas.max_storage_bytes, defaults.max_storage_bytes),
    )
    s.add(tenant)
    try:
        s.flush()
    except IntegrityError:
        raise ApiError(409, f"Tenant {name!r} already exists.") from None
    token, secret = issue_token(s, role="tenant", tenant_id=tenant.id, name="initial")
    return tenant, token, secret


def _pick(value: int | None, default: int) -> int:
    return default if value is None else value


def set_quotas(tenant: Tenant, quotas: QuotasIn) -> None:
    for key, value in quotas.model_dump(exclude_none=True).items():
        setattr(tenant, key, value)


def tenant_by_ref(s: Session, ref: str) -> Tenant:
    """A tenant by id or name (admin only), or 404."""
    tenant = s.get(Tenant, ref) or s.scalar(select(Tenant).where(Tenant.name == ref))
    if tenant is None:
        raise not_found("Tenant", ref)
    return tenant


# Built once (every submit runs both): building a statement costs more than running it. The
# active-job sums read only the index ix_jobs_tenant_active (tenant, status, chips, gpus).
_TENANT: BindParameter[str] = bindparam("tenant_id")
_USAGE = select(
    func.count(),
    func.coalesce(func.sum(Job.chips), 0),
    func.coalesce(func.sum(Job.gpus), 0),
    select(func.coalesce(func.sum(Dataset.size_bytes), 0))
    .where(Dataset.tenant_id == _TENANT)
    .scalar_subquery(),
    select(func.coalesce(func.sum(Model.size_bytes), 0))
    .where(Model.tenant_id == _TENANT)
    .scalar_subquery(),
    select(func.coalesce(func.sum(CodeArchive.size_bytes), 0))
    .where(CodeArchive.tenant_id == _TENANT)
    .scalar_subquery(),
).where(Job.tenant_id == _TENANT, Job.status.in_(ACTIVE))
_LOCK_TENANT = select(Tenant).where(Tenant.id == _TENANT).with_for_update()


def usage(s: Session, tenant_id: str) -> Usage:
    jobs, chips, gpus, data, models, code = s.execute(_USAGE, {"tenant_id": tenant_id}).one()
    return Usage(
        active_jobs=int(jobs),
        chips=int(chips),
        gpus=int(gpus),
        storage_bytes=int(data or 0) + int(models or 0) + int(code or 0),
    )


def storage_changed(s: Session, tenant_id: str, delta_bytes: int, what: str) -> None:
    """Record that the tenant's stored bytes changed (metering integrates these)."""
    if delta_bytes:
        s.add(StorageChange(tenant_id=tenant_id, delta_bytes=delta_bytes, what=what[:64]))


def lock_tenant(s: Session, tenant_id: str) -> Tenant:
    """The tenant row, locked until the transaction ends (serialises quota checks on PostgreSQL)."""
    tenant = s.scalar(_LOCK_TENANT, {"tenant_id": tenant_id})
    if tenant is None:  # deleted while the request ran
        raise ApiError(401, "Invalid or revoked token.")
    return tenant


def tenant_out(s: Session, t: Tenant) -> TenantOut:
    return TenantOut(
        id=t.id,
        name=t.name,
        disabled=t.disabled,
        created_at=t.created_at,
        quotas=Quotas(
            max_concurrent_jobs=t.max_concurrent_jobs,
            max_chips=t.max_chips,
            max_gpus=t.max_gpus,
            max_storage_bytes=t.max_storage_bytes,
        ),
        usage=usage(s, t.id),
    )


def token_out(t: Token) -> TokenOut:
    return TokenOut(
        id=t.id,
        tenant_id=t.tenant_id,
        role=t.role,
        name=t.name,
        prefix=t.prefix,
        created_at=t.created_at,
        expires_at=t.expires_at,
        revoked_at=t.revoked_at,
    )


def token_created(t: Token, secret: str) -> TokenCreated:
    return TokenCreated(token=secret, **token_out(t).model_dump())
