"""One upload, end to end: quota check, atomic write, database row; nothing half-stored."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from fastapi import Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from dojo.service.deps import Context
from dojo.service.problems import ApiError, quota_exceeded
from dojo.service.storage import Stored
from dojo.service.tenants import lock_tenant, usage

T = TypeVar("T")
BINARY_BODY = {"requestBody": {"required": True, "content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}


def _room(ctx: Context, tenant_id: str) -> tuple[int, int, int]:
    """(limit, used, room) of the tenant's storage quota [bytes]."""
    with ctx.db.session() as s:
        tenant = lock_tenant(s, tenant_id)
        used = usage(s, tenant_id).storage_bytes
        return tenant.max_storage_bytes, used, max(0, tenant.max_storage_bytes - used)


async def receive_upload(request: Request, ctx: Context, tenant_id: str, folder: Path, name: str,
                         *, magic: bytes | None,
                         commit: Callable[[Session, Stored], T]) -> T:
    """Stream the request body to ``folder/name`` and record it with ``commit`` in one transaction.

    On any failure (quota, size, disk, client gone, database) the file is not left behind.
    """
    limit, used, room = await run_in_threadpool(_room, ctx, tenant_id)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > room:
        raise quota_exceeded("max_storage_bytes", limit, used, int(declared), "bytes")
    cap = ctx.config.max_upload_bytes

    def too_large(size: int) -> ApiError:
        if size > cap:
            return ApiError(413, f"Upload {name!r} is over the limit of {cap} bytes per file.", limit=cap)
        return quota_exceeded("max_storage_bytes", limit, used, size, "bytes")

    stored = await ctx.storage.receive(request.stream(), folder, name, max_bytes=min(cap, room),
                                       too_large=too_large, magic=magic)

    def record() -> T:
        with ctx.db.session() as s:
            tenant = lock_tenant(s, tenant_id)
            now_used = usage(s, tenant_id).storage_bytes
            if now_used + stored.size_bytes > tenant.max_storage_bytes:
                raise quota_exceeded("max_storage_bytes", tenant.max_storage_bytes, now_used,
                                     stored.size_bytes, "bytes")
            return commit(s, stored)

    try:
        return await run_in_threadpool(record)
    except BaseException:
        stored.path.unlink(missing_ok=True)
        raise
