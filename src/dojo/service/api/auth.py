"""API tokens: high-entropy secrets shown once, stored as SHA-256; roles ``tenant`` and ``admin``."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from dojo.service.api.problems import ApiError
from dojo.service.store.schema import Tenant, Token, aware, utcnow

TOKEN_PREFIX = "dojo_"
ROLES = ("tenant", "admin")


def new_id(prefix: str) -> str:
    """An opaque identifier (64 random bits), e.g. ``job_3f2a...``."""
    return f"{prefix}_{secrets.token_hex(8)}"


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def issue_token(
    s: Session,
    *,
    role: str,
    tenant_id: str | None,
    name: str = "",
    expires_in_s: float | None = None,
) -> tuple[Token, str]:
    """A new token row and its secret (the only time the secret exists outside the client)."""
    if role not in ROLES or (role == "tenant") != (tenant_id is not None):
        raise ValueError(f"bad token role {role!r} for tenant {tenant_id!r}")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)  # 256 bits
    expires = utcnow() + timedelta(seconds=expires_in_s) if expires_in_s is not None else None
    row = Token(
        id=new_id("tok"),
        tenant_id=tenant_id,
        role=role,
        name=name,
        prefix=secret[: len(TOKEN_PREFIX) + 6],
        hash=hash_token(secret),
        expires_at=expires,
    )
    s.add(row)
    s.flush()
    return row, secret


# Built once: constructing a statement costs more than running it on this hot path (every request).
_BY_HASH = (
    select(
        Token.id,
        Token.role,
        Token.tenant_id,
        Token.revoked_at,
        Token.expires_at,
        Tenant.id.label("tenant_found"),
        Tenant.name,
        Tenant.disabled,
    )
    .outerjoin(Tenant, Tenant.id == Token.tenant_id)
    .where(Token.hash == bindparam("hash"))
)


@dataclass(frozen=True)
class Principal:
    """Who is calling: a tenant (``tenant_id`` set) or an admin."""

    token_id: str
    role: str
    tenant_id: str | None


def authenticate(s: Session, authorization: str | None, now: datetime | None = None) -> Principal:
    """The caller of a request from its ``Authorization: Bearer TOKEN`` header, or 401/403."""
    if not authorization:
        raise ApiError(401, "Missing token: send 'Authorization: Bearer TOKEN'.")
    scheme, _, secret = authorization.partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise ApiError(401, "Malformed Authorization header: expected 'Bearer TOKEN'.")
    # one query for the token and its tenant (plain columns, no ORM objects: this runs per request)
    row = s.execute(_BY_HASH, {"hash": hash_token(secret)}).first()
    if row is None or row.revoked_at is not None:
        raise ApiError(401, "Invalid or revoked token.")
    expires = aware(row.expires_at)
    if expires is not None and expires <= (now or utcnow()):
        raise ApiError(401, "Token expired.")
    if row.tenant_id is not None:
        if row.tenant_found is None:
            raise ApiError(401, "Invalid or revoked token.")
        if row.disabled:
            raise ApiError(403, f"Tenant {row.name!r} is disabled.")
    return Principal(token_id=row.id, role=row.role, tenant_id=row.tenant_id)
