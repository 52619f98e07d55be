"""Jobs: submit, list, show, cancel; their logs (streamed) and metrics."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from dojo.service.api.deps import Context, Ctx, TenantId
from dojo.service.api.models import JobKind, JobList, JobOut, JobSubmit, MetricsIn, MetricsOut
from dojo.service.api.problems import ApiError
from dojo.service.constants import ACTIVE, STATUSES
from dojo.service.store import jobstore
from dojo.service.store.schema import Dataset, Job
from dojo.service.store.storage import inside

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
TEXT_BODY = {
    "requestBody": {"required": True, "content": {"text/plain": {"schema": {"type": "string"}}}}
}
StatusFilter = Annotated[
    str | None,
    Query(max_length=200, pattern=r"^[a-z]+(,[a-z]+)*$", description="comma-separated statuses"),
]


@router.post("", status_code=201, response_model=JobOut)
def submit(body: JobSubmit, ctx: Ctx, tenant_id: TenantId) -> JobOut:
    """Queue a job; 403 if it would exceed the tenant's quotas, 422 for a bad spec."""
    with ctx.db.session() as s:
        job = jobstore.submit(s, tenant_id, body)
        _check_inputs(s, ctx, job)  # a refusal rolls the job back
        return jobstore.job_out(job)


def _check_inputs(s: Session, ctx: Context, job: Job) -> None:
    """What the spec names fits its kind: drive logs for drive and ingest; for a script, a
    dataset it can mount and an entry point its code holds (422 otherwise)."""
    ds_id = job.spec.get("dataset")
    ds = s.get(Dataset, ds_id) if isinstance(ds_id, str) and ds_id.startswith("ds_") else None
    if ds is not None and job.kind in ("drive", "ingest") and ds.kind != "drive_logs":
        raise ApiError(
            422, f"Dataset {ds.id!r} holds files, not drive logs; {job.kind} needs drive logs."
        )
    if job.kind != "script":
        return
    if ds is not None and ds.source != "upload":
        raise ApiError(
            422,
            f"Dataset {ds.id!r} is a registered store; a script reads uploaded datasets only "
            "(upload its files into a files dataset).",
        )
    code_dir = ctx.storage.code_dir(job.tenant_id, job.spec["code"])
    entry = job.spec["entry"]
    if not inside(code_dir, *entry.split("/")).is_file():
        raise ApiError(
            422,
            f"Entry point {entry!r} is not a file in code {job.spec['code']!r} "
            "(GET /v1/code/ID/files lists what it holds).",
        )


@router.get("", response_model=JobList)
def list_jobs(
    ctx: Ctx,
    tenant_id: TenantId,
    status: StatusFilter = None,
    kind: JobKind | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> JobList:
    """The tenant's jobs, newest first."""
    if status and any(x not in STATUSES for x in status.split(",")):
        raise ApiError(422, f"Unknown status in {status!r}; choose from {', '.join(STATUSES)}.")
    with ctx.db.session(readonly=True) as s:
        rows, total = jobstore.list_jobs(
            s, tenant_id, status=status, kind=kind, limit=limit, offset=offset
        )
        return JobList(jobs=[jobstore.job_out(j) for j in rows], total=total)


@router.get("/{job_id}", response_model=JobOut)
def show(job_id: str, ctx: Ctx, tenant_id: TenantId) -> JobOut:
    with ctx.db.session(readonly=True) as s:
        return jobstore.job_out(jobstore.get(s, tenant_id, job_id))


@router.post("/{job_id}/cancel", response_model=JobOut)
def cancel(job_id: str, ctx: Ctx, tenant_id: TenantId) -> JobOut:
    """Cancel a job: at once if it waits, through its agent (``cancelling``) if it runs."""
    with ctx.db.session() as s:
        return jobstore.job_out(jobstore.cancel(s, tenant_id, job_id))


@router.get(
    "/{job_id}/logs",
    response_class=Response,
    responses={
        200: {
            "content": {"text/plain": {}},
            "description": "log bytes from offset; "
            "headers X-Log-Offset (next offset) and X-Job-Status",
        }
    },
)
async def logs(
    job_id: str,
    ctx: Ctx,
    tenant_id: TenantId,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
    follow: bool = False,
) -> Response:
    """The job's log from byte ``offset``; ``follow`` streams new lines until the job ends."""

    def read(at: int) -> tuple[bytes, str, int]:
        with ctx.db.session() as s:
            job = jobstore.get(s, tenant_id, job_id)
            return jobstore.read_log(s, job_id, at), job.status, job.log_bytes

    data, status, size = await run_in_threadpool(read, offset)
    headers = {"X-Job-Status": status, "X-Log-Size": str(size)}
    if not follow:
        headers["X-Log-Offset"] = str(offset + len(data))
        return Response(data, media_type="text/plain; charset=utf-8", headers=headers)

    async def stream() -> AsyncIterator[bytes]:
        at, chunk, state = offset, data, status
        deadline = time.monotonic() + ctx.config.follow_timeout_s
        while True:
            if chunk:
                yield chunk
                at += len(chunk)
            elif state not in ACTIVE or time.monotonic() > deadline:
                return
            else:
                await anyio.sleep(ctx.config.follow_poll_s)
            chunk, state, _ = await run_in_threadpool(read, at)

    return StreamingResponse(stream(), media_type="text/plain; charset=utf-8", headers=headers)


@router.post("/{job_id}/logs", openapi_extra=TEXT_BODY)
async def append_logs(
    job_id: str, request: Request, ctx: Ctx, tenant_id: TenantId
) -> dict[str, Any]:
    """Append text to the job's log (the runner does this); 409 once the job has ended."""
    data = await request.body()

    def write() -> int:
        with ctx.db.session() as s:
            job = jobstore.get(s, tenant_id, job_id, lock=True)
            return jobstore.append_log(s, job, data, ctx.config.max_log_bytes_per_job)

    return {"log_bytes": await run_in_threadpool(write)}


@router.get("/{job_id}/metrics", response_model=MetricsOut)
def metrics(
    job_id: str,
    ctx: Ctx,
    tenant_id: TenantId,
    after: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> MetricsOut:
    """Metric rows after sequence number ``after``, in order; each row has ``seq`` added."""
    with ctx.db.session() as s:
        jobstore.get(s, tenant_id, job_id)
        rows = jobstore.read_metrics(s, job_id, after, limit)
        return MetricsOut(
            rows=[{**r.data, "seq": r.seq} for r in rows], next_seq=rows[-1].seq if rows else after
        )


@router.post("/{job_id}/metrics")
def post_metrics(job_id: str, body: MetricsIn, ctx: Ctx, tenant_id: TenantId) -> dict[str, Any]:
    """Append metric rows (the runner does this), e.g. ``{"rows": [{"step": 1, "loss": 0.9}]}``."""
    if len(body.rows) > ctx.config.max_metric_rows_per_request:
        raise ApiError(
            413,
            f"{len(body.rows)} metric rows in one request; the limit is "
            f"{ctx.config.max_metric_rows_per_request}.",
        )
    with ctx.db.session() as s:
        job = jobstore.get(s, tenant_id, job_id, lock=True)
        return {"metric_rows": jobstore.add_metrics(s, job, body.rows)}
