"""Models: checkpoints a job uploads, listed and downloaded by its tenant."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from dojo.service.api.deps import Ctx, TenantId
from dojo.service.api.models import ModelOut
from dojo.service.api.problems import ApiError, not_found
from dojo.service.api.uploads import BINARY_BODY, add_model, receive_upload
from dojo.service.store import jobstore
from dojo.service.store.schema import Model
from dojo.service.store.storage import Stored, safe_name

router = APIRouter(tags=["models"])


def _out(m: Model) -> ModelOut:
    return ModelOut(
        id=m.id,
        job_id=m.job_id,
        name=m.name,
        size_bytes=m.size_bytes,
        sha256=m.sha256,
        created_at=m.created_at,
    )


def _get(s: Session, tenant_id: str, model_id: str) -> Model:
    m = s.scalar(select(Model).where(Model.id == model_id, Model.tenant_id == tenant_id))
    if m is None:
        raise not_found("Model", model_id)
    return m


@router.post(
    "/v1/jobs/{job_id}/checkpoints",
    status_code=201,
    response_model=ModelOut,
    openapi_extra=BINARY_BODY,
)
async def upload_checkpoint(
    job_id: str,
    request: Request,
    ctx: Ctx,
    tenant_id: TenantId,
    name: Annotated[str, Query(max_length=1024, description="e.g. step_1000.pt")],
) -> ModelOut:
    """Store a checkpoint of the job (the raw body) as a model of the tenant."""
    safe_name(name)

    def precheck() -> None:
        with ctx.db.session() as s:
            jobstore.get(s, tenant_id, job_id)
            if s.scalar(select(Model.id).where(Model.job_id == job_id, Model.name == name)):
                raise ApiError(409, f"Checkpoint {name!r} of job {job_id!r} already exists.")

    await run_in_threadpool(precheck)

    def commit(s: Session, stored: Stored) -> ModelOut:
        jobstore.get(s, tenant_id, job_id)
        return _out(add_model(s, ctx.storage, tenant_id, job_id, name, stored))

    folder = ctx.storage.checkpoint_dir(tenant_id, job_id)
    return await receive_upload(request, ctx, tenant_id, folder, name, magic=None, commit=commit)


@router.get("/v1/models", response_model=list[ModelOut])
def list_models(
    ctx: Ctx, tenant_id: TenantId, job_id: Annotated[str | None, Query(max_length=64)] = None
) -> list[ModelOut]:
    with ctx.db.session() as s:
        q = select(Model).where(Model.tenant_id == tenant_id)
        if job_id is not None:
            q = q.where(Model.job_id == job_id)
        return [_out(m) for m in s.scalars(q.order_by(Model.created_at, Model.id))]


@router.get("/v1/models/{model_id}", response_model=ModelOut)
def show(model_id: str, ctx: Ctx, tenant_id: TenantId) -> ModelOut:
    with ctx.db.session() as s:
        return _out(_get(s, tenant_id, model_id))


@router.get(
    "/v1/models/{model_id}/download",
    response_class=FileResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def download(model_id: str, ctx: Ctx, tenant_id: TenantId) -> FileResponse:
    with ctx.db.session() as s:
        m = _get(s, tenant_id, model_id)
    path = ctx.storage.absolute(m.path)
    if not path.is_file():
        raise ApiError(410, f"Model {model_id!r} is recorded but its file is gone.")
    return FileResponse(
        path, media_type="application/octet-stream", filename=m.name, headers={"X-Sha256": m.sha256}
    )
