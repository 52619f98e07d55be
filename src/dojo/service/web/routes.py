"""The dashboard: web pages of the service, behind the same tokens as the API.

Mounted with ``app.include_router(routes.router)``; every page is under ``/dashboard`` and left
out of the OpenAPI spec. Pages:

- ``/dashboard``: the ExaPOD as a map (cabinets, trays, tiles; a shared tile shows its chips)
  coloured by job; a tenant sees its own jobs and everyone else's allocations as anonymous
  "busy"; an admin sees every job, coloured by tenant. Below it, the active jobs and, for a
  tenant, its usage this month (chip- and GPU-seconds, storage, energy, cost).
- ``/dashboard/jobs``: the job list with status filters; ``/dashboard/jobs/{id}``: one job, its
  loss and nines charts (inline SVG) and its log, followed while the job is active.

Authentication: ``Authorization: Bearer TOKEN`` as for the API, or, for a browser, the login
page, which checks the token and keeps it in a cookie (HttpOnly, SameSite=Strict, Path
/dashboard, Secure over HTTPS); see :mod:`~dojo.service.web.session`. What the pages read is in
:mod:`~dojo.service.web.queries`, what they show (the map) in :mod:`~dojo.service.web.view`.
"""

from __future__ import annotations

import json
from typing import Annotated
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from dojo.service import placement
from dojo.service.constants import ACTIVE, STATUSES
from dojo.service.store import jobstore
from dojo.service.store.schema import Tenant
from dojo.service.web import queries
from dojo.service.web.html import CSS, JS, render
from dojo.service.web.session import (
    ROOT,
    DataViewer,
    PageViewer,
    SecuredRoute,
    check_login,
    context,
    forget_login,
    keep_login,
    page,
    safe_next,
    same_origin,
)
from dojo.service.web.svg import BUSY_FILL, FREE_FILL, job_charts
from dojo.service.web.view import compute_map, when, where

LOG_TAIL_BYTES = 64 * 1024  # of the log shown when a job page opens
LOG_CHUNK_BYTES = 1 << 20  # most bytes one log poll returns
PAGE_SIZE = 50

router = APIRouter(prefix=ROOT, include_in_schema=False, route_class=SecuredRoute)


@router.get("/login")
def login_form(request: Request, next: Annotated[str, Query(max_length=300)] = "") -> HTMLResponse:
    return page("login", None, title="Log in", error="", next=safe_next(next))


@router.post("/login")
async def login(request: Request) -> Response:
    """Check the token; keep it in an HttpOnly, SameSite=Strict cookie; go on to ``next``."""
    same_origin(request)
    body = await request.body()
    try:
        form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=4)
    except ValueError:
        form = {}
    token = (form.get("token") or [""])[0].strip()
    target = safe_next((form.get("next") or [""])[0]) or ROOT
    error, max_age = await run_in_threadpool(check_login, context(request), token)
    if error:
        return page("login", None, 401, title="Log in", error=error, next=target)
    response = RedirectResponse(target, status_code=303)
    keep_login(request, response, token, max_age)
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    same_origin(request)
    response = RedirectResponse(f"{ROOT}/login", status_code=303)
    forget_login(response)
    return response


@router.get("/static/{name}")
def static(name: str) -> Response:
    files = {
        "dashboard.css": (CSS, "text/css; charset=utf-8"),
        "dashboard.js": (JS, "text/javascript; charset=utf-8"),
    }
    if name not in files:
        return Response("Not found.", status_code=404, media_type="text/plain; charset=utf-8")
    text, media = files[name]
    return Response(text, media_type=media, headers={"Cache-Control": "no-cache"})


@router.get("")
def map_page(request: Request, viewer: PageViewer) -> HTMLResponse:
    """The compute map and the active jobs."""
    with context(request).db.session() as s:
        view = compute_map(queries.placed_jobs(s), viewer)
        jobs = queries.job_rows(s, viewer, statuses=ACTIVE, limit=PAGE_SIZE, offset=0)[0]
        usage = queries.month_usage(s, viewer)
    return page(
        "map",
        viewer,
        title="Compute map",
        refresh=30,
        svg=view.svg,
        summary=view.summary,
        legend=view.legend,
        gpu_jobs=view.gpu_jobs,
        unplaced=view.unplaced,
        show_busy=not viewer.admin,
        free_fill=FREE_FILL,
        busy_fill=BUSY_FILL,
        jobs=jobs,
        admin=viewer.admin,
        usage=usage,
    )


@router.get("/jobs")
def jobs_page(
    request: Request,
    viewer: PageViewer,
    status: Annotated[str, Query(max_length=200)] = "",
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> HTMLResponse:
    wanted = tuple(x for x in status.split(",") if x in STATUSES) if status else ()
    with context(request).db.session() as s:
        jobs, total = queries.job_rows(
            s, viewer, statuses=wanted or None, limit=PAGE_SIZE, offset=offset
        )

    def href(st: str, off: int = 0) -> str:
        q = {k: v for k, v in (("status", st), ("offset", str(off) if off else "")) if v}
        return f"{ROOT}/jobs" + (f"?{urlencode(q)}" if q else "")

    chosen = ",".join(wanted)
    filters = [
        {"label": "all", "href": href(""), "on": not wanted},
        {"label": "active", "href": href(",".join(ACTIVE)), "on": chosen == ",".join(ACTIVE)},
    ]
    filters += [{"label": st, "href": href(st), "on": chosen == st} for st in STATUSES]
    shown = f"{offset + 1}–{offset + len(jobs)} of {total}" if jobs else f"0 of {total}"
    return page(
        "jobs",
        viewer,
        title="Jobs",
        refresh=30,
        jobs=jobs,
        admin=viewer.admin,
        filters=filters,
        summary=f"{shown} jobs, newest first.",
        prev=href(chosen, max(0, offset - PAGE_SIZE)) if offset > 0 else "",
        next=href(chosen, offset + PAGE_SIZE) if offset + PAGE_SIZE < total else "",
    )


@router.get("/jobs/{job_id}")
def job_page(request: Request, job_id: str, viewer: PageViewer) -> HTMLResponse:
    with context(request).db.session() as s:
        job = queries.visible_job(s, viewer, job_id, page=True)
        start = max(0, job.log_bytes - LOG_TAIL_BYTES)
        data = jobstore.read_log(s, job.id, start, LOG_TAIL_BYTES)
        charts = job_charts(queries.chart_rows(s, job))
        tenant = s.get(Tenant, job.tenant_id) if viewer.admin else None
    facts: list[tuple[str, object]] = [("kind", job.kind)]
    if viewer.admin:
        facts.append(("tenant", tenant.name if tenant else job.tenant_id))
    facts += [
        ("priority", job.priority),
        ("compute", f"{job.compute_count} {job.compute_unit}"),
        ("where", where(placement.read(job.placement), job.placement)),
        ("attempt", f"{job.attempt} of {job.max_attempts}"),
        ("agent", job.agent or "–"),
        ("exit code", "–" if job.exit_code is None else job.exit_code),
        ("created", when(job.created_at)),
        ("started", when(job.started_at)),
        ("finished", when(job.finished_at)),
        ("heartbeat", when(job.heartbeat_at)),
        ("log", f"{job.log_bytes:,} bytes"),
        ("metric rows", f"{job.metric_rows:,}"),
    ]
    return page(
        "job",
        viewer,
        title=f"Job {job.name or job.id}",
        job=job,
        facts=facts,
        charts=charts,
        log=data.decode("utf-8", "replace"),
        offset=start + len(data),
        skipped=start,
        spec=json.dumps(job.spec, indent=2, sort_keys=True),
        placement=json.dumps(job.placement) if job.placement else "",
    )


@router.get("/jobs/{job_id}/log")
def job_log(
    request: Request,
    job_id: str,
    viewer: DataViewer,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
) -> Response:
    """Log bytes from ``offset`` (as ``GET /v1/jobs/{id}/logs``): ``X-Log-Offset`` says where to
    go on, ``X-Job-Status`` whether to."""
    with context(request).db.session() as s:
        job = queries.visible_job(s, viewer, job_id, page=False)
        data = jobstore.read_log(s, job.id, offset, LOG_CHUNK_BYTES)
        headers = {
            "X-Log-Offset": str(offset + len(data)),
            "X-Job-Status": job.status,
            "X-Log-Size": str(job.log_bytes),
        }
    return Response(data, media_type="text/plain; charset=utf-8", headers=headers)


@router.get("/jobs/{job_id}/charts")
def job_charts_fragment(request: Request, job_id: str, viewer: DataViewer) -> HTMLResponse:
    """The charts part of the job page (the page's script swaps it in while the job runs)."""
    with context(request).db.session() as s:
        job = queries.visible_job(s, viewer, job_id, page=False)
        charts = job_charts(queries.chart_rows(s, job))
    return HTMLResponse(render("charts", charts=charts))
