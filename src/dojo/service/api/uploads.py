"""One upload, end to end: quota check, atomic write, database row; nothing half-stored."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from fastapi import Request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from dojo.errors import StorageFullError
from dojo.service.api.auth import new_id
from dojo.service.api.deps import Context
from dojo.service.api.problems import ApiError, not_found, quota_exceeded
from dojo.service.store.db import Database
from dojo.service.store.schema import Dataset, DatasetFile, Model
from dojo.service.store.storage import Storage, Stored
from dojo.service.store.tenants import lock_tenant, storage_changed, usage

T = TypeVar("T")
BINARY_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@dataclass(frozen=True)
class Room:
    """A tenant's storage quota when an upload began [bytes]."""

    limit: int
    used: int

    @property
    def left(self) -> int:
        return max(0, self.limit - self.used)

    def exceeded(self, size: int) -> ApiError:
        """The 403 for ``size`` more bytes than there is room for."""
        return quota_exceeded("max_storage_bytes", self.limit, self.used, size, "bytes")


def room_left(db: Database, tenant_id: str) -> Room:
    with db.session() as s:
        tenant = lock_tenant(s, tenant_id)
        return Room(tenant.max_storage_bytes, usage(s, tenant_id).storage_bytes)


async def receive_within_quota(
    db: Database,
    storage: Storage,
    tenant_id: str,
    folder: Path,
    name: str,
    chunks: AsyncIterator[bytes],
    *,
    cap: int,
    magic: bytes | None,
    declared: int | None = None,
    label: str | None = None,
) -> tuple[Stored, Room]:
    """Write ``chunks`` to ``folder/name`` (nothing recorded yet) within the tenant's room and
    ``cap`` bytes a file: checked before (against ``declared``, if known) and while the bytes
    arrive. ``label``: what the 413 calls it (default: ``Upload 'name'``)."""
    room = await run_in_threadpool(room_left, db, tenant_id)
    if declared is not None and declared > room.left:
        raise room.exceeded(declared)

    def too_large(size: int) -> ApiError:
        if size > cap:
            what = label or f"Upload {name!r}"
            return ApiError(413, f"{what} is over the limit of {cap} bytes per file.", limit=cap)
        return room.exceeded(size)

    try:
        stored = await storage.receive(
            chunks, folder, name, max_bytes=min(cap, room.left), too_large=too_large, magic=magic
        )
    except StorageFullError as e:
        raise ApiError(507, str(e)) from None
    return stored, room


async def store_file(
    db: Database,
    storage: Storage,
    tenant_id: str,
    folder: Path,
    name: str,
    chunks: AsyncIterator[bytes],
    *,
    cap: int,
    magic: bytes | None,
    commit: Callable[[Session, Stored], T],
    declared: int | None = None,
) -> T:
    """Write ``chunks`` to ``folder/name`` and record it with ``commit`` in one transaction.

    The quota is checked before (against ``declared`` size, if known), while the bytes arrive,
    and again under the tenant lock when recording. No transaction is held while the bytes are
    written. On any failure (quota, ``cap`` per file, disk, sender gone, database) the file is
    not left behind.
    """
    stored, _ = await receive_within_quota(
        db, storage, tenant_id, folder, name, chunks, cap=cap, magic=magic, declared=declared
    )

    def record() -> T:
        with db.session() as s:
            check_room(s, tenant_id, stored.size_bytes)
            return commit(s, stored)

    try:
        return await run_in_threadpool(record)
    except BaseException:
        stored.path.unlink(missing_ok=True)
        raise


def check_room(s: Session, tenant_id: str, size_bytes: int) -> None:
    """Under the tenant lock (held to the end of ``s``): 403 unless ``size_bytes`` more fit."""
    tenant = lock_tenant(s, tenant_id)
    now_used = usage(s, tenant_id).storage_bytes
    if now_used + size_bytes > tenant.max_storage_bytes:
        raise quota_exceeded(
            "max_storage_bytes", tenant.max_storage_bytes, now_used, size_bytes, "bytes"
        )


CHUNK_BYTES = 1 << 20


async def file_chunks(path: Path) -> AsyncIterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            yield chunk


def store_path(
    db: Database,
    storage: Storage,
    tenant_id: str,
    folder: Path,
    name: str,
    path: Path,
    *,
    cap: int,
    magic: bytes | None,
    commit: Callable[[Session, Stored], T],
) -> T:
    """A local file (a job's output) through :func:`store_file`, as if uploaded."""
    return asyncio.run(
        store_file(
            db,
            storage,
            tenant_id,
            folder,
            name,
            file_chunks(path),
            cap=cap,
            magic=magic,
            commit=commit,
            declared=path.stat().st_size,
        )
    )


def add_stored(
    s: Session, row: object, tenant_id: str, size_bytes: int, what: str, taken: str
) -> None:
    """Insert ``row``, the record of ``size_bytes`` stored for object ``what``, and the tenant's
    storage change; a 409 saying ``taken`` where its name is already used."""
    s.add(row)
    try:
        s.flush()
    except IntegrityError:
        raise ApiError(409, taken) from None
    storage_changed(s, tenant_id, size_bytes, what)


def add_model(
    s: Session, storage: Storage, tenant_id: str, job_id: str, name: str, stored: Stored
) -> Model:
    """Record a stored file as a model of the job (409 if the job has one of that name)."""
    m = Model(
        id=new_id("mdl"),
        tenant_id=tenant_id,
        job_id=job_id,
        name=name,
        path=storage.relative(stored.path),
        size_bytes=stored.size_bytes,
        sha256=stored.sha256,
    )
    add_stored(
        s,
        m,
        tenant_id,
        m.size_bytes,
        m.id,
        f"Checkpoint {name!r} of job {job_id!r} already exists.",
    )
    return m


async def receive_upload(
    request: Request,
    ctx: Context,
    tenant_id: str,
    folder: Path,
    name: str,
    *,
    magic: bytes | None,
    commit: Callable[[Session, Stored], T],
) -> T:
    """An HTTP upload's body through :func:`store_file`."""
    declared = request.headers.get("content-length")
    return await store_file(
        ctx.db,
        ctx.storage,
        tenant_id,
        folder,
        name,
        request.stream(),
        cap=ctx.config.max_upload_bytes,
        magic=magic,
        commit=commit,
        declared=int(declared) if declared is not None and declared.isdigit() else None,
    )


def add_dataset_file(
    s: Session, tenant_id: str, dataset_id: str, name: str, stored: Stored
) -> DatasetFile:
    """Record a stored file in a tenant's dataset (404 for another tenant's; 409 if the name is taken)."""
    ds = get_dataset(s, tenant_id, dataset_id)
    row = DatasetFile(
        dataset_id=ds.id, name=name, size_bytes=stored.size_bytes, sha256=stored.sha256
    )
    ds.size_bytes += stored.size_bytes
    ds.files += 1
    taken = f"File {name!r} already exists; stored files are never replaced."
    add_stored(s, row, tenant_id, stored.size_bytes, ds.id, taken)
    return row


def get_dataset(s: Session, tenant_id: str, dataset_id: str) -> Dataset:
    """A tenant's dataset, or 404 (also for another tenant's)."""
    ds = s.scalar(select(Dataset).where(Dataset.id == dataset_id, Dataset.tenant_id == tenant_id))
    if ds is None:
        raise not_found("Dataset", dataset_id)
    return ds
