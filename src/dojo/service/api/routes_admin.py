"""Admin endpoints: tenants, their quotas and their tokens."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from dojo.service.api.auth import issue_token
from dojo.service.api.deps import Admin, Ctx
from dojo.service.api.models import (
    TenantCreate,
    TenantCreated,
    TenantOut,
    TenantUpdate,
    TokenCreate,
    TokenCreated,
    TokenOut,
)
from dojo.service.store.schema import Tenant, Token
from dojo.service.store.tenants import (
    create_tenant,
    set_quotas,
    tenant_by_ref,
    tenant_out,
    token_created,
    token_out,
)

router = APIRouter(prefix="/v1/tenants", tags=["admin"])


@router.post("", status_code=201, response_model=TenantCreated)
def create(body: TenantCreate, ctx: Ctx, _: Admin) -> TenantCreated:
    """Create a tenant; the response holds its first token, shown only once."""
    with ctx.db.session() as s:
        tenant, token, secret = create_tenant(s, body.name, body.quotas, ctx.config.default_quotas)
        return TenantCreated(
            token=token_created(token, secret), **tenant_out(s, tenant).model_dump()
        )


@router.get("", response_model=list[TenantOut])
def list_tenants(ctx: Ctx, _: Admin) -> list[TenantOut]:
    with ctx.db.session() as s:
        return [tenant_out(s, t) for t in s.scalars(select(Tenant).order_by(Tenant.name))]


@router.get("/{tenant_ref}", response_model=TenantOut)
def show(tenant_ref: str, ctx: Ctx, _: Admin) -> TenantOut:
    """A tenant by id or name, with its quotas and usage."""
    with ctx.db.session() as s:
        return tenant_out(s, tenant_by_ref(s, tenant_ref))


@router.patch("/{tenant_ref}", response_model=TenantOut)
def change(tenant_ref: str, body: TenantUpdate, ctx: Ctx, _: Admin) -> TenantOut:
    """Change quotas (only the fields given) or disable/enable a tenant."""
    with ctx.db.session() as s:
        tenant = tenant_by_ref(s, tenant_ref)
        if body.quotas is not None:
            set_quotas(tenant, body.quotas)
        if body.disabled is not None:
            tenant.disabled = body.disabled
        s.flush()
        return tenant_out(s, tenant)


@router.post("/{tenant_ref}/tokens", status_code=201, response_model=TokenCreated)
def new_token(tenant_ref: str, body: TokenCreate, ctx: Ctx, _: Admin) -> TokenCreated:
    with ctx.db.session() as s:
        tenant = tenant_by_ref(s, tenant_ref)
        token, secret = issue_token(
            s, role="tenant", tenant_id=tenant.id, name=body.name, expires_in_s=body.expires_in_s
        )
        return token_created(token, secret)


@router.get("/{tenant_ref}/tokens", response_model=list[TokenOut])
def tokens(tenant_ref: str, ctx: Ctx, _: Admin) -> list[TokenOut]:
    with ctx.db.session() as s:
        tenant = tenant_by_ref(s, tenant_ref)
        rows = s.scalars(
            select(Token).where(Token.tenant_id == tenant.id).order_by(Token.created_at)
        )
        return [token_out(t) for t in rows]
