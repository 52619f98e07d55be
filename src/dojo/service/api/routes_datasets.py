"""Datasets: files uploaded into the tenant's folder, or a registered store.

A dataset's ``kind`` says what it takes: ``drive_logs`` (MCAP drive logs, one file name each,
checked for MCAP's magic bytes; what ingest and train read) or ``files`` (any files, named by a
relative path such as ``images/ok/0001.png``; what a ``script`` job reads at
``DOJO_DATA_DIR``).
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from dojo.service.api.auth import new_id
from dojo.service.api.deps import Ctx, TenantId
from dojo.service.api.models import DatasetCreate, DatasetFileOut, DatasetOut
from dojo.service.api.problems import ApiError
from dojo.service.api.uploads import BINARY_BODY, add_dataset_file, get_dataset, receive_upload
from dojo.service.store import jobstore
from dojo.service.store.schema import Dataset, DatasetFile
from dojo.service.store.storage import MCAP_MAGIC, Stored, safe_name, safe_path
from dojo.service.store.tenants import storage_changed

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

# Stores a tenant may register: remote object stores only; a local path could name another
# tenant's folder or the server's own files.
STORE_SCHEMES = ("s3", "gs", "gcs", "az", "abfs", "abfss", "https")


def _out(ds: Dataset) -> DatasetOut:
    return DatasetOut(
        id=ds.id,
        name=ds.name,
        source=ds.source,  # type: ignore[arg-type]
        kind=ds.kind,  # type: ignore[arg-type]
        uri=ds.uri,
        size_bytes=ds.size_bytes,
        files=ds.files,
        created_at=ds.created_at,
    )


def _file_out(f: DatasetFile) -> DatasetFileOut:
    return DatasetFileOut(
        name=f.name, size_bytes=f.size_bytes, sha256=f.sha256, created_at=f.created_at
    )


def check_store_uri(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.scheme not in STORE_SCHEMES or not parts.netloc:
        raise ApiError(
            422,
            f"Store {uri[:200]!r} is not a remote store URL; use one of "
            f"{', '.join(s + '://' for s in STORE_SCHEMES)} (local paths cannot be "
            "registered; upload the files instead).",
        )
    return uri


@router.post("", status_code=201, response_model=DatasetOut)
def create(body: DatasetCreate, ctx: Ctx, tenant_id: TenantId) -> DatasetOut:
    """An empty dataset to upload into, or (with ``uri``) a registered remote store."""
    uri = check_store_uri(body.uri) if body.uri is not None else None
    with ctx.db.session() as s:
        if s.scalar(
            select(Dataset.id).where(Dataset.tenant_id == tenant_id, Dataset.name == body.name)
        ):
            raise ApiError(409, f"Dataset {body.name!r} already exists.")
        ds = Dataset(
            id=new_id("ds"),
            tenant_id=tenant_id,
            name=body.name,
            uri=uri,
            source="store" if uri else "upload",
            kind=body.kind,
            size_bytes=0,
            files=0,
        )
        s.add(ds)
        try:
            s.flush()
        except IntegrityError:
            raise ApiError(409, f"Dataset {body.name!r} already exists.") from None
        return _out(ds)


@router.get("", response_model=list[DatasetOut])
def list_datasets(ctx: Ctx, tenant_id: TenantId) -> list[DatasetOut]:
    with ctx.db.session() as s:
        rows = s.scalars(
            select(Dataset).where(Dataset.tenant_id == tenant_id).order_by(Dataset.created_at)
        )
        return [_out(d) for d in rows]


@router.get("/{dataset_id}", response_model=DatasetOut)
def show(dataset_id: str, ctx: Ctx, tenant_id: TenantId) -> DatasetOut:
    with ctx.db.session() as s:
        return _out(get_dataset(s, tenant_id, dataset_id))


@router.delete("/{dataset_id}", status_code=204)
def delete(dataset_id: str, ctx: Ctx, tenant_id: TenantId) -> Response:
    """Delete a dataset and its files; refused (409) while an active job names it."""
    with ctx.db.session() as s:
        ds = get_dataset(s, tenant_id, dataset_id)
        if jobstore.named_by_active_job(s, tenant_id, "dataset", dataset_id):
            raise ApiError(409, f"Dataset {dataset_id!r} is used by an active job.")
        storage_changed(s, tenant_id, -ds.size_bytes, ds.id)
        s.delete(ds)
    ctx.storage.remove_tree(ctx.storage.dataset_dir(tenant_id, dataset_id))
    return Response(status_code=204)


@router.get("/{dataset_id}/files", response_model=list[DatasetFileOut])
def files(dataset_id: str, ctx: Ctx, tenant_id: TenantId) -> list[DatasetFileOut]:
    with ctx.db.session() as s:
        get_dataset(s, tenant_id, dataset_id)
        rows = s.scalars(
            select(DatasetFile)
            .where(DatasetFile.dataset_id == dataset_id)
            .order_by(DatasetFile.name)
        )
        return [_file_out(f) for f in rows]


@router.post(
    "/{dataset_id}/files", status_code=201, response_model=DatasetFileOut, openapi_extra=BINARY_BODY
)
async def upload(
    dataset_id: str,
    request: Request,
    ctx: Ctx,
    tenant_id: TenantId,
    name: Annotated[
        str,
        Query(
            max_length=1024,
            description="file name, e.g. drive_0001.mcap; in a files dataset a relative path, "
            "e.g. images/ok/0001.png",
        ),
    ],
) -> DatasetFileOut:
    """Upload one file (the raw body): an MCAP drive log, or any file into a ``files`` dataset.
    Stored files are never replaced (409)."""
    safe_path(name)

    def precheck() -> str:
        with ctx.db.session() as s:
            ds = get_dataset(s, tenant_id, dataset_id)
            if ds.kind == "drive_logs":
                safe_name(name)  # drive logs lie side by side
            if ds.source != "upload":
                raise ApiError(
                    409, f"Dataset {dataset_id!r} is a registered store; it takes no uploads."
                )
            if (
                s.scalar(
                    select(DatasetFile.id).where(
                        DatasetFile.dataset_id == dataset_id, DatasetFile.name == name
                    )
                )
                is not None
            ):
                raise ApiError(
                    409, f"File {name!r} already exists; stored files are never replaced."
                )
            return ds.kind

    kind = await run_in_threadpool(precheck)
    folder = ctx.storage.dataset_dir(tenant_id, dataset_id)

    def commit(s: Session, stored: Stored) -> DatasetFileOut:
        return _file_out(add_dataset_file(s, tenant_id, dataset_id, name, stored))

    return await receive_upload(
        request,
        ctx,
        tenant_id,
        folder,
        name,
        magic=MCAP_MAGIC if kind == "drive_logs" else None,
        commit=commit,
    )
