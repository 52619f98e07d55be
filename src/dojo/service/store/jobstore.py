"""The job store's operations: what the API does for tenants, and what a scheduler or an agent
calls directly on the shared database (claim, heartbeat, finish, requeue).

Every tenant-facing function takes the caller's ``tenant_id`` and answers 404 for a job of
another tenant. Quota checks lock the tenant row (``SELECT ... FOR UPDATE`` on PostgreSQL; on
SQLite every transaction already holds the write lock), so concurrent submissions cannot
overshoot a quota.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Select, bindparam, func, select, update
from sqlalchemy.orm import Session

from dojo.service.api.auth import new_id
from dojo.service.api.models import JobOut, JobSubmit
from dojo.service.api.problems import ApiError, not_found, quota_exceeded
from dojo.service.constants import ACTIVE, CHIPS_PER_TILE, TERMINAL
from dojo.service.specs import SPECS, references
from dojo.service.store.schema import (
    CodeArchive,
    Dataset,
    Job,
    JobRun,
    LogChunk,
    MetricRow,
    Model,
    aware,
    utcnow,
)
from dojo.service.store.tenants import lock_tenant, usage


def validate_spec(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    """The spec with defaults filled in, or a 422 listing what is wrong."""
    try:
        parsed = SPECS[kind].model_validate(spec)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'spec'}: {err['msg']}"
            for err in e.errors(include_url=False)
        )
        raise ApiError(422, f"Invalid {kind} spec: {problems}.") from None
    return parsed.model_dump(mode="json")


_OWNED: dict[str, type[Dataset] | type[Model] | type[CodeArchive]] = {
    "dataset": Dataset,
    "model": Model,
    "code": CodeArchive,
}  # what a spec's reference names: its table


def submit(s: Session, tenant_id: str, req: JobSubmit) -> Job:
    spec = validate_spec(req.kind, req.spec)
    for what, ident in references(SPECS[req.kind].model_validate(spec)):
        table = _OWNED[what]
        if (
            s.scalar(select(table.id).where(table.id == ident, table.tenant_id == tenant_id))
            is None
        ):
            raise not_found(what.capitalize(), ident)
    unit, count = req.compute.unit, req.compute.count
    chips = count * CHIPS_PER_TILE if unit == "tiles" else count if unit == "chips" else 0
    gpus = count if unit == "gpus" else 0
    tenant = lock_tenant(s, tenant_id)
    used = usage(s, tenant_id)
    if used.active_jobs + 1 > tenant.max_concurrent_jobs:
        raise quota_exceeded(
            "max_concurrent_jobs", tenant.max_concurrent_jobs, used.active_jobs, 1, "jobs"
        )
    if chips and used.chips + chips > tenant.max_chips:
        raise quota_exceeded("max_chips", tenant.max_chips, used.chips, chips, "chips")
    if gpus and used.gpus + gpus > tenant.max_gpus:
        raise quota_exceeded("max_gpus", tenant.max_gpus, used.gpus, gpus, "GPUs")
    now = utcnow()
    job = Job(
        id=new_id("job"),
        tenant_id=tenant_id,
        name=req.name,
        kind=req.kind,
        status="queued",
        priority=req.priority,
        compute_unit=unit,
        compute_count=count,
        chips=chips,
        gpus=gpus,
        spec=spec,
        attempt=0,
        max_attempts=req.max_attempts,
        time_limit_s=req.time_limit_s,
        log_bytes=0,
        metric_rows=0,
        created_at=now,
        updated_at=now,
    )
    s.add(job)
    s.flush()
    return job


# The hot reads (every show and list) as statements built once: constructing one costs more
# than SQLite takes to run it.
_GET = select(Job).where(Job.id == bindparam("job_id"), Job.tenant_id == bindparam("tenant_id"))
_GET_LOCKED = _GET.with_for_update()


def get(s: Session, tenant_id: str, job_id: str, *, lock: bool = False) -> Job:
    job = s.scalar(_GET_LOCKED if lock else _GET, {"job_id": job_id, "tenant_id": tenant_id})
    if job is None:
        raise not_found("Job", job_id)
    return job


def _listing(with_status: bool, with_kind: bool) -> tuple[Select[Any], Select[Any]]:
    """(count, page) statements for a job listing with or without each filter."""
    where = [Job.tenant_id == bindparam("tenant_id")]
    if with_status:
        where.append(Job.status.in_(bindparam("statuses", expanding=True)))
    if with_kind:
        where.append(Job.kind == bindparam("kind"))
    page = (
        select(Job)
        .where(*where)
        .order_by(Job.created_at.desc(), Job.id.desc())
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
    )
    return select(func.count()).select_from(Job).where(*where), page


_LISTINGS = {(st, kd): _listing(st, kd) for st in (False, True) for kd in (False, True)}


def list_jobs(
    s: Session, tenant_id: str, *, status: str | None, kind: str | None, limit: int, offset: int
) -> tuple[list[Job], int]:
    count, page = _LISTINGS[bool(status), bool(kind)]
    params: dict[str, Any] = {"tenant_id": tenant_id, "limit": limit, "offset": offset}
    if status:
        params["statuses"] = status.split(",")
    if kind:
        params["kind"] = kind
    total = s.scalar(count, params) or 0
    rows = s.scalars(page, params).all()
    return list(rows), int(total)


def named_by_active_job(s: Session, tenant_id: str, key: str, ident: str) -> bool:
    """Whether an active job of the tenant names ``ident`` as its spec's ``key`` (an object in
    use is not deleted)."""
    specs = s.scalars(select(Job.spec).where(Job.tenant_id == tenant_id, Job.status.in_(ACTIVE)))
    return any(spec.get(key) == ident for spec in specs)


def cancel(s: Session, tenant_id: str, job_id: str) -> Job:
    """Queued or placed: cancelled now. Running: ``cancelling`` until its agent stops it."""
    job = get(s, tenant_id, job_id, lock=True)
    if job.status in TERMINAL:
        raise ApiError(409, f"Job {job_id!r} already {job.status}.")
    now = utcnow()
    if job.status in ("queued", "placed"):
        job.status, job.finished_at, job.placement = "cancelled", now, None
    elif job.status == "running":
        job.status = "cancelling"
    job.updated_at = now
    return job


def job_out(job: Job) -> JobOut:
    return JobOut(
        id=job.id,
        name=job.name,
        kind=job.kind,
        status=job.status,
        priority=job.priority,
        compute={job.compute_unit: job.compute_count},
        spec=job.spec,
        placement=job.placement,
        attempt=job.attempt,
        max_attempts=job.max_attempts,
        time_limit_s=job.time_limit_s,
        exit_code=job.exit_code,
        error=job.error,
        log_bytes=job.log_bytes,
        metric_rows=job.metric_rows,
        created_at=job.created_at,
        updated_at=job.updated_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        heartbeat_at=job.heartbeat_at,
    )


# --- logs and metrics ------------------------------------------------------------------------


def append_log(s: Session, job: Job, data: bytes, max_bytes: int) -> int:
    """Append to a job's log (the job row must be locked); returns the new log size [bytes]."""
    if job.status in TERMINAL:
        raise ApiError(409, f"Job {job.id!r} is {job.status}; its log is closed.")
    if job.log_bytes + len(data) > max_bytes:
        raise ApiError(413, f"Job {job.id!r} log would exceed {max_bytes} bytes.", limit=max_bytes)
    if data:
        s.add(LogChunk(job_id=job.id, offset=job.log_bytes, data=data))
        job.log_bytes += len(data)
    return job.log_bytes


def read_log(s: Session, job_id: str, offset: int, max_bytes: int = 1 << 20) -> bytes:
    """Up to ``max_bytes`` of a job's log from byte ``offset``."""
    first = s.scalar(
        select(func.max(LogChunk.offset)).where(
            LogChunk.job_id == job_id, LogChunk.offset <= offset
        )
    )
    q = select(LogChunk).where(LogChunk.job_id == job_id, LogChunk.offset >= (first or 0))
    out = bytearray()
    for chunk in s.scalars(q.order_by(LogChunk.offset)):
        piece = chunk.data[max(0, offset - chunk.offset) :]
        out += piece
        if len(out) >= max_bytes:
            break
    return bytes(out[:max_bytes])


def add_metrics(s: Session, job: Job, rows: list[dict[str, Any]]) -> int:
    """Append metric rows (the job row must be locked); returns the row count."""
    if job.status in TERMINAL:
        raise ApiError(409, f"Job {job.id!r} is {job.status}; its metrics are closed.")
    now = utcnow()
    for i, row in enumerate(rows):
        s.add(MetricRow(job_id=job.id, seq=job.metric_rows + i + 1, data=row, created_at=now))
    job.metric_rows += len(rows)
    return job.metric_rows


def read_metrics(s: Session, job_id: str, after: int, limit: int) -> list[MetricRow]:
    q = select(MetricRow).where(MetricRow.job_id == job_id, MetricRow.seq > after)
    return list(s.scalars(q.order_by(MetricRow.seq).limit(limit)))


# --- for the scheduler and the agents (direct database access, no tenant scoping) ---------


def claim_next(
    s: Session,
    agent: str,
    *,
    status: str = "queued",
    kinds: tuple[str, ...] | None = None,
    max_gpus: int | None = None,
) -> Job | None:
    """Take the most urgent ``status`` job for ``agent``: it becomes ``running``.

    On PostgreSQL the candidate row is read with ``FOR UPDATE SKIP LOCKED``, so concurrent
    agents each get a different job without waiting on each other; the guarded UPDATE makes the
    claim safe on any database. A scheduler that places jobs first passes ``status="placed"``.
    """
    q = select(Job).where(Job.status == status)
    if kinds:
        q = q.where(Job.kind.in_(kinds))
    if max_gpus is not None:
        q = q.where(Job.gpus <= max_gpus)
    q = q.order_by(Job.priority.desc(), Job.created_at, Job.id).limit(1)
    job = s.scalar(q.with_for_update(skip_locked=True))
    if job is None:
        return None
    now = utcnow()
    done = s.execute(
        update(Job)
        .where(Job.id == job.id, Job.status == status)
        .values(
            status="running",
            agent=agent,
            heartbeat_at=now,
            started_at=now,
            updated_at=now,
            attempt=Job.attempt + 1,
        )
        .execution_options(synchronize_session=False)
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        return None
    s.refresh(job)
    system = (job.placement or {}).get("system")
    s.add(
        JobRun(
            job_id=job.id,
            tenant_id=job.tenant_id,
            attempt=job.attempt,
            kind=job.kind,
            chips=job.chips,
            gpus=job.gpus,
            system=system if isinstance(system, str) else None,
            agent=agent,
            started_at=now,
        )
    )
    return job


def close_run(s: Session, job: Job, outcome: str, at: datetime | None = None) -> None:
    """End the job's open run (if any) at ``at`` (default now) with ``outcome``."""
    run = s.scalar(
        select(JobRun)
        .where(JobRun.job_id == job.id, JobRun.ended_at.is_(None))
        .order_by(JobRun.id.desc())
        .limit(1)
    )
    if run is not None:
        end = max(at or utcnow(), aware(run.started_at) or utcnow())
        run.ended_at, run.outcome = end, outcome


def heartbeat(s: Session, job_id: str, agent: str) -> str:
    """Record that ``agent`` still runs the job; returns its status (``cancelling``: stop it)."""
    job = s.scalar(select(Job).where(Job.id == job_id).with_for_update())
    if job is None or job.agent != agent or job.status not in ("running", "cancelling"):
        return "lost"
    job.heartbeat_at = job.updated_at = utcnow()
    return job.status


def finish(
    s: Session,
    job_id: str,
    agent: str,
    *,
    status: str,
    exit_code: int | None = None,
    error: str | None = None,
) -> bool:
    """Close a job the agent runs (succeeded, failed or cancelled). False if it is not the agent's."""
    if status not in TERMINAL:
        raise ValueError(f"finish status must be one of {TERMINAL}, not {status!r}")
    job = s.scalar(select(Job).where(Job.id == job_id).with_for_update())
    if job is None or job.agent != agent or job.status not in ("running", "cancelling"):
        return False
    now = utcnow()
    close_run(s, job, status, now)
    job.status, job.exit_code, job.error, job.finished_at, job.updated_at = (
        status,
        exit_code,
        error,
        now,
        now,
    )
    return True


def requeue_stale(s: Session, older_than_s: float, now: datetime | None = None) -> list[str]:
    """Running jobs whose heartbeat is older than ``older_than_s``: back to ``queued`` (or
    ``failed`` after ``max_attempts`` runs). Returns their ids."""
    cutoff = (now or utcnow()) - timedelta(seconds=older_than_s)
    stale = s.scalars(
        select(Job)
        .where(Job.status.in_(("running", "cancelling")), Job.heartbeat_at < cutoff)
        .with_for_update(skip_locked=True)
    ).all()
    for job in stale:
        close_run(s, job, "lost", aware(job.heartbeat_at))  # billed up to its last heartbeat
        if job.status == "cancelling":
            job.status, job.finished_at = "cancelled", utcnow()
        elif job.attempt >= job.max_attempts:
            job.status, job.error, job.finished_at = (
                "failed",
                "agent lost; no attempts left",
                utcnow(),
            )
        else:
            job.status, job.agent, job.placement = "queued", None, None
        job.updated_at = utcnow()
    return [j.id for j in stale]


def is_active(status: str) -> bool:
    return status in ACTIVE
