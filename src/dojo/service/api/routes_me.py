"""The caller's own tenant and tokens."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from dojo.service.api.auth import issue_token
from dojo.service.api.deps import Ctx, TenantId
from dojo.service.api.models import TenantOut, TokenCreate, TokenCreated, TokenOut
from dojo.service.api.problems import not_found
from dojo.service.store.schema import Tenant, Token, utcnow
from dojo.service.store.tenants import tenant_out, token_created, token_out

router = APIRouter(prefix="/v1", tags=["tenant"])


@router.get("/me", response_model=TenantOut)
def me(ctx: Ctx, tenant_id: TenantId) -> TenantOut:
    """The caller's tenant: quotas and what it uses now."""
    with ctx.db.session() as s:
        tenant = s.get(Tenant, tenant_id)
        assert tenant is not None
        return tenant_out(s, tenant)


@router.get("/tokens", response_model=list[TokenOut])
def tokens(ctx: Ctx, tenant_id: TenantId) -> list[TokenOut]:
    with ctx.db.session() as s:
        rows = s.scalars(
            select(Token).where(Token.tenant_id == tenant_id).order_by(Token.created_at)
        )
        return [token_out(t) for t in rows]


@router.post("/tokens", status_code=201, response_model=TokenCreated)
def create_token(body: TokenCreate, ctx: Ctx, tenant_id: TenantId) -> TokenCreated:
    """A new token for the caller's tenant; the secret is in this response only."""
    with ctx.db.session() as s:
        token, secret = issue_token(
            s, role="tenant", tenant_id=tenant_id, name=body.name, expires_in_s=body.expires_in_s
        )
        return token_created(token, secret)


@router.delete("/tokens/{token_id}", response_model=TokenOut)
def revoke_token(token_id: str, ctx: Ctx, tenant_id: TenantId) -> TokenOut:
    with ctx.db.session() as s:
        token = s.scalar(select(Token).where(Token.id == token_id, Token.tenant_id == tenant_id))
        if token is None:
            raise not_found("Token", token_id)
        token.revoked_at = token.revoked_at or utcnow()
        return token_out(token)
