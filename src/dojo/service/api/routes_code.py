"""Code: a tenant's training code, uploaded as a tar.gz or zip of a folder, for ``script`` jobs.

The archive is received like any upload (streamed to disk, capped per file and by the storage
quota), unpacked member by member, each checked first (:mod:`dojo.service.store.archive`: no
absolute paths, no ``..``, no links, no zip bomb), then recorded under the tenant lock with the
quota checked once more. The unpacked files are what is kept and counted; the archive itself is removed. Listed,
shown and deleted like datasets; a code archive an active job names cannot be deleted.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from dojo.service.api.auth import new_id
from dojo.service.api.deps import Ctx, TenantId
from dojo.service.api.models import CodeOut, Name
from dojo.service.api.problems import ApiError, not_found
from dojo.service.api.uploads import BINARY_BODY, add_stored, check_room, receive_within_quota
from dojo.service.store import archive, jobstore
from dojo.service.store.schema import CodeArchive
from dojo.service.store.tenants import storage_changed

router = APIRouter(prefix="/v1/code", tags=["code"])


def _out(c: CodeArchive) -> CodeOut:
    return CodeOut(
        id=c.id,
        name=c.name,
        size_bytes=c.size_bytes,
        files=c.files,
        sha256=c.sha256,
        created_at=c.created_at,
    )


def get_code(s: Session, tenant_id: str, code_id: str) -> CodeArchive:
    """A tenant's code archive, or 404 (also for another tenant's)."""
    c = s.scalar(
        select(CodeArchive).where(CodeArchive.id == code_id, CodeArchive.tenant_id == tenant_id)
    )
    if c is None:
        raise not_found("Code", code_id)
    return c


def _taken(s: Session, tenant_id: str, name: str) -> bool:
    q = select(CodeArchive.id).where(CodeArchive.tenant_id == tenant_id, CodeArchive.name == name)
    return s.scalar(q) is not None


@router.post("", status_code=201, response_model=CodeOut, openapi_extra=BINARY_BODY)
async def upload(
    request: Request,
    ctx: Ctx,
    tenant_id: TenantId,
    name: Annotated[Name, Query(description="a name for this code, e.g. defects-v1")],
) -> CodeOut:
    """Upload a code archive (the raw body: a .tar.gz or .zip of a folder)."""

    def precheck() -> None:
        with ctx.db.session(readonly=True) as s:
            if _taken(s, tenant_id, name):
                raise ApiError(409, f"Code {name!r} already exists.")

    await run_in_threadpool(precheck)
    code_id = new_id("code")
    stored, room = await receive_within_quota(
        ctx.db,
        ctx.storage,
        tenant_id,
        ctx.storage.tenant_dir(tenant_id) / "code" / ".incoming",
        f"{code_id}.archive",
        request.stream(),
        cap=ctx.config.max_upload_bytes,
        magic=None,
        label="Code archive",
    )
    dest = ctx.storage.code_dir(tenant_id, code_id)

    def unpack_and_record() -> CodeOut:
        try:
            unpacked = archive.unpack(
                stored.path, dest, max_bytes=room.left, over_quota=room.exceeded
            )
        except OSError as e:
            raise ApiError(507, f"The code could not be unpacked ({e.strerror}).") from None
        finally:
            stored.path.unlink(missing_ok=True)
        try:
            with ctx.db.session() as s:
                check_room(s, tenant_id, unpacked.size_bytes)
                row = CodeArchive(
                    id=code_id,
                    tenant_id=tenant_id,
                    name=name,
                    size_bytes=unpacked.size_bytes,
                    files=unpacked.files,
                    sha256=stored.sha256,
                )
                add_stored(
                    s, row, tenant_id, row.size_bytes, code_id, f"Code {name!r} already exists."
                )
                return _out(row)
        except BaseException:
            ctx.storage.remove_tree(dest)
            raise

    return await run_in_threadpool(unpack_and_record)


@router.get("", response_model=list[CodeOut])
def list_code(ctx: Ctx, tenant_id: TenantId) -> list[CodeOut]:
    with ctx.db.session(readonly=True) as s:
        q = select(CodeArchive).where(CodeArchive.tenant_id == tenant_id)
        return [_out(c) for c in s.scalars(q.order_by(CodeArchive.created_at, CodeArchive.id))]


@router.get("/{code_id}", response_model=CodeOut)
def show(code_id: str, ctx: Ctx, tenant_id: TenantId) -> CodeOut:
    with ctx.db.session(readonly=True) as s:
        return _out(get_code(s, tenant_id, code_id))


@router.get("/{code_id}/files", response_model=list[str])
def files(code_id: str, ctx: Ctx, tenant_id: TenantId) -> list[str]:
    """The archive's files, as paths relative to its root (what ``entry`` may name)."""
    with ctx.db.session(readonly=True) as s:
        get_code(s, tenant_id, code_id)
    return archive.files_under(ctx.storage.code_dir(tenant_id, code_id))


@router.delete("/{code_id}", status_code=204)
def delete(code_id: str, ctx: Ctx, tenant_id: TenantId) -> Response:
    """Delete a code archive; refused (409) while an active job names it."""
    with ctx.db.session() as s:
        c = get_code(s, tenant_id, code_id)
        if jobstore.named_by_active_job(s, tenant_id, "code", code_id):
            raise ApiError(409, f"Code {code_id!r} is used by an active job.")
        storage_changed(s, tenant_id, -c.size_bytes, c.id)
        s.delete(c)
    ctx.storage.remove_tree(ctx.storage.code_dir(tenant_id, code_id))
    return Response(status_code=204)
