"""What every route gets: the service context and the authenticated caller."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from dojo.service.api.auth import Principal, authenticate
from dojo.service.api.problems import ApiError
from dojo.service.config import ServiceConfig
from dojo.service.store.db import Database
from dojo.service.store.storage import Storage


@dataclass
class Context:
    config: ServiceConfig
    db: Database
    storage: Storage


# Dependencies that do no I/O are ``async def``: FastAPI would run a plain ``def`` in the thread
# pool, a thread hop per dependency per request.
async def context(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


_bearer = HTTPBearer(auto_error=False, description="an API token: 'Authorization: Bearer TOKEN'")


def principal(
    request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None
) -> Principal:
    """The caller (the bearer scheme above only documents the header in the OpenAPI spec)."""
    ctx: Context = request.app.state.ctx
    with ctx.db.session(readonly=True) as s:
        return authenticate(s, request.headers.get("authorization"))


async def tenant(p: Annotated[Principal, Depends(principal)]) -> str:
    """The caller's tenant id; admin tokens own no tenant objects (403)."""
    if p.tenant_id is None:
        raise ApiError(403, "This endpoint needs a tenant token; admin tokens manage tenants only.")
    return p.tenant_id


async def admin(p: Annotated[Principal, Depends(principal)]) -> Principal:
    if p.role != "admin":
        raise ApiError(403, "This endpoint needs an admin token.")
    return p


Ctx = Annotated[Context, Depends(context)]
TenantId = Annotated[str, Depends(tenant)]
Admin = Annotated[Principal, Depends(admin)]
