"""A finished `drive` job's MCAP logs into the tenant's dataset named in its spec.

Each log goes the way an HTTP upload does (:func:`dojo.service.api.uploads.store_file`): quota
checked, written atomically into the dataset's folder with no transaction held, then recorded
(name, size, SHA-256) under the tenant lock. A name is the job id and the log's path under the
drive's output, so two drives never collide; a log already recorded under its name is skipped,
so a job run again (its agent lost mid-way) stores each log once. Any refusal (the dataset gone
or a registered store, the quota, a full disk) is an :class:`~dojo.service.api.problems.ApiError`
with its reason, and leaves no file.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from dojo.service.api.problems import ApiError
from dojo.service.api.uploads import add_dataset_file, get_dataset, store_path
from dojo.service.store.db import Database
from dojo.service.store.schema import DatasetFile
from dojo.service.store.storage import MCAP_MAGIC, Storage, Stored


def _held(db: Database, tenant_id: str, dataset_id: str) -> set[str]:
    """The names the dataset holds; 404 or 409 if it cannot take these logs."""
    with db.session(readonly=True) as s:
        ds = get_dataset(s, tenant_id, dataset_id)
        if ds.source != "upload":
            raise ApiError(
                409, f"Dataset {dataset_id!r} is a registered store; it takes no uploads."
            )
        return set(s.scalars(select(DatasetFile.name).where(DatasetFile.dataset_id == dataset_id)))


def store_drive_logs(
    db: Database,
    storage: Storage,
    tenant_id: str,
    dataset_id: str,
    job_id: str,
    logs_dir: Path,
    *,
    cap: int,
) -> int:
    """Store every ``*.mcap`` under ``logs_dir`` (each at most ``cap`` bytes) into the dataset;
    returns how many were new."""
    held = _held(db, tenant_id, dataset_id)
    folder = storage.dataset_dir(tenant_id, dataset_id)
    added = 0
    for log in sorted(logs_dir.rglob("*.mcap")):
        name = f"{job_id}_{log.relative_to(logs_dir).as_posix().replace('/', '_')}"
        if name in held:
            continue

        def commit(s: Session, stored: Stored, name: str = name) -> DatasetFile:
            return add_dataset_file(s, tenant_id, dataset_id, name, stored)

        store_path(
            db, storage, tenant_id, folder, name, log, cap=cap, magic=MCAP_MAGIC, commit=commit
        )
        added += 1
    return added
