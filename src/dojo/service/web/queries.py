"""What the dashboard reads from the job store: a job the viewer may see, a page of the job list,
the metric rows of the charts, the jobs that hold compute (for the map) and a tenant's usage
this month."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dojo.errors import ConfigError
from dojo.service import metering, placement
from dojo.service.api.problems import ApiError
from dojo.service.store import jobstore
from dojo.service.store.schema import Job, MetricRow, Tenant, utcnow
from dojo.service.web.session import Answer, Viewer, error_page, plain
from dojo.service.web.view import PlacedJob, when, where

MAX_CHART_ROWS = 100_000  # metric rows read for the charts; beyond that every k-th row
CHART_KEYS = ("step", "loss", "val_loss", "nines", "nines_low", "nines_high")


def visible_job(s: Session, viewer: Viewer, job_id: str, *, page: bool) -> Job:
    """A job the viewer may see (any for an admin); the same 404 for another tenant's as for none."""
    try:
        if viewer.admin:
            job = s.get(Job, job_id)
            if job is None:
                raise ApiError(404, f"Job {job_id!r} not found.")
            return job
        assert viewer.tenant_id is not None
        return jobstore.get(s, viewer.tenant_id, job_id)
    except ApiError as e:
        if page:
            raise Answer(error_page(404, "Not found", e.detail, viewer)) from None
        raise Answer(plain(e.detail, 404)) from None


def job_rows(
    s: Session, viewer: Viewer, *, statuses: Iterable[str] | None, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """One page of the viewer's jobs (every tenant's, for an admin), newest first, and the total."""
    q = select(Job, Tenant.name).join(Tenant, Tenant.id == Job.tenant_id)
    if not viewer.admin:
        q = q.where(Job.tenant_id == viewer.tenant_id)
    if statuses:
        q = q.where(Job.status.in_(tuple(statuses)))
    total = s.scalar(select(func.count()).select_from(q.subquery())) or 0
    rows = s.execute(
        q.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit).offset(offset)
    ).all()
    return [
        {
            "id": j.id,
            "name": j.name,
            "tenant": tenant,
            "kind": j.kind,
            "status": j.status,
            "compute": f"{j.compute_count} {j.compute_unit}",
            "priority": j.priority,
            "where": where(placement.read(j.placement), j.placement),
            "created": when(j.created_at),
        }
        for j, tenant in rows
    ], int(total)


def chart_rows(s: Session, job: Job) -> list[tuple[int, dict[str, object]]]:
    """(seq, the charted fields) of a job's metric rows; every k-th row past MAX_CHART_ROWS."""
    q = select(MetricRow.seq, MetricRow.data).where(MetricRow.job_id == job.id)
    if job.metric_rows > MAX_CHART_ROWS:
        stride = math.ceil(job.metric_rows / MAX_CHART_ROWS)
        q = q.where((MetricRow.seq % stride == 0) | (MetricRow.seq == job.metric_rows))
    out: list[tuple[int, dict[str, object]]] = []
    for seq, data in s.execute(q.order_by(MetricRow.seq)).yield_per(2000):
        if isinstance(data, dict):
            row = {k: data[k] for k in CHART_KEYS if k in data}
            if len(row) > ("step" in row):
                out.append((int(seq), row))
    return out


def placed_jobs(s: Session) -> list[PlacedJob]:
    """Every job that holds compute and has a placement, by tenant name then age."""
    q = (
        select(Job.id, Job.tenant_id, Job.name, Job.status, Job.placement, Tenant.name)
        .join(Tenant, Tenant.id == Job.tenant_id)
        .where(Job.status.in_(("placed", "running", "cancelling")))
        .order_by(Tenant.name, Job.created_at, Job.id)
    )
    return [
        PlacedJob(job_id, tenant_id, name, status, placement.read(column), tenant_name)
        for job_id, tenant_id, name, status, column, tenant_name in s.execute(q).all()
        if column
    ]


def month_usage(s: Session, viewer: Viewer) -> list[tuple[str, str]]:
    """The tenant's metered usage since the month began, as (label, value) rows (none for an
    admin, whose page shows every tenant's jobs but no one tenant's bill)."""
    if viewer.admin or viewer.tenant_id is None:
        return []
    start = metering.month_start()
    try:
        prices: metering.Prices | None = metering.load_prices()
    except ConfigError:  # the operator's file is broken: show the usage, not a made-up cost
        prices = None
    report = metering.usage(
        s, viewer.tenant_id, start, utcnow(), prices or metering.packaged_prices()
    )
    return [
        ("since", when(start)),
        ("chip-seconds", f"{report.chip_seconds:,.0f}"),
        ("GPU-seconds", f"{report.gpu_seconds:,.0f}"),
        ("storage", f"{report.storage_gb_hours:,.3f} GB-hours"),
        ("energy", f"{report.energy_kwh:,.3f} kWh"),
        ("jobs", f"{report.jobs:,}"),
        ("cost", f"{report.cost:,.2f} {report.currency}" if prices else "unavailable"),
    ]
