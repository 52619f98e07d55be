"""A finished `drive` job's MCAP logs into the tenant's dataset named in its spec.

Each log is stored as an upload would be: written atomically into the dataset's folder, then
recorded (name, size, SHA-256) in one transaction that locks the tenant and checks its storage
quota. A name is the job id and the log's path under the drive's output, so two drives never
collide; a log already recorded under its name is skipped, so a job run again (its agent lost
mid-way) stores each log once. Any refusal (the dataset gone or a registered store, the quota,
a full disk) is an :class:`~dojo.service.problems.ApiError` with its reason, and leaves no file.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from sqlalchemy import select

from dojo.service.db import Database
from dojo.service.problems import ApiError, not_found, quota_exceeded
from dojo.service.schema import Dataset, DatasetFile
from dojo.service.storage import MCAP_MAGIC, Storage
from dojo.service.tenants import lock_tenant, usage

CHUNK_BYTES = 1 << 20


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            yield chunk


def _dataset(db: Database, tenant_id: str, dataset_id: str) -> set[str]:
    """The names the dataset holds; 404 or 409 if it cannot take these logs."""
    with db.session(readonly=True) as s:
        ds = s.get(Dataset, dataset_id)
        if ds is None or ds.tenant_id != tenant_id:
            raise not_found("Dataset", dataset_id)
        if ds.source != "upload":
            raise ApiError(409, f"Dataset {dataset_id!r} is a registered store; it takes no uploads.")
        return set(s.scalars(select(DatasetFile.name).where(DatasetFile.dataset_id == dataset_id)))


def store_drive_logs(db: Database, storage: Storage, tenant_id: str, dataset_id: str, job_id: str,
                     logs_dir: Path) -> int:
    """Store every ``*.mcap`` under ``logs_dir`` into the dataset; returns how many were new."""
    held = _dataset(db, tenant_id, dataset_id)
    folder = storage.dataset_dir(tenant_id, dataset_id)
    added = 0
    for log in sorted(logs_dir.rglob("*.mcap")):
        name = f"{job_id}_{log.relative_to(logs_dir).as_posix().replace('/', '_')}"
        if name in held:
            continue
        with db.session() as s:
            tenant = lock_tenant(s, tenant_id)
            used = usage(s, tenant_id).storage_bytes
            room = max(0, tenant.max_storage_bytes - used)

            def too_large(size: int, limit: int = tenant.max_storage_bytes, used: int = used) -> ApiError:
                return quota_exceeded("max_storage_bytes", limit, used, size, "bytes")

            stored = asyncio.run(storage.receive(_chunks(log), folder, name, max_bytes=room,
                                                 too_large=too_large, magic=MCAP_MAGIC))
            try:
                ds = s.get(Dataset, dataset_id)
                if ds is None:  # deleted meanwhile
                    raise not_found("Dataset", dataset_id)
                s.add(DatasetFile(dataset_id=dataset_id, name=name, size_bytes=stored.size_bytes,
                                  sha256=stored.sha256))
                ds.size_bytes += stored.size_bytes
                ds.files += 1
                s.flush()
            except BaseException:
                stored.path.unlink(missing_ok=True)
                raise
        added += 1
    return added
