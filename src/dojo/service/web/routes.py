"""The dashboard: web pages of the service, behind the same tokens as the API.

Mounted with ``app.include_router(dashboard.router)``; every page is under ``/dashboard`` and
left out of the OpenAPI spec. Pages:

- ``/dashboard``: the ExaPOD as a map (cabinets, trays, tiles; a shared tile shows its chips)
  coloured by job; a tenant sees its own jobs and everyone else's allocations as anonymous
  "busy"; an admin sees every job, coloured by tenant. Below it, the active jobs.
- ``/dashboard/jobs``: the job list with status filters; ``/dashboard/jobs/{id}``: one job, its
  loss and nines charts (inline SVG drawn here) and its log, followed while the job is active.

Authentication: ``Authorization: Bearer TOKEN`` as for the API, or, for a browser, the login
page, which checks the token and keeps it in a cookie (HttpOnly, SameSite=Strict, Path
/dashboard, Secure over HTTPS). The API itself never reads the cookie, so cookie-carrying
cross-site requests can do nothing there; the dashboard only reads, and its two POSTs (login,
logout) refuse other origins. Every answer carries a strict Content-Security-Policy (own script
and stylesheet only, nothing inline, nothing fetched from elsewhere).

Placements (the ``placement`` column the scheduler writes) are read leniently, see
:func:`placement_chips`; GPU jobs (``resource: gpus``) are listed under the map.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from dojo.compute.specs import load_family
from dojo.compute.topology import Topology
from dojo.errors import DojoConfigError
from dojo.service.api.auth import authenticate, hash_token
from dojo.service.api.deps import Context
from dojo.service.api.problems import ApiError
from dojo.service.constants import ACTIVE, STATUSES
from dojo.service.store import jobstore
from dojo.service.store.schema import Job, MetricRow, Tenant, Token, aware, utcnow
from dojo.service.web.html import CSS, JS, render
from dojo.service.web.svg import (
    BUSY_FILL,
    FREE_FILL,
    PALETTE,
    Owner,
    job_charts,
    map_svg,
    shade,
)

ROOT = "/dashboard"
COOKIE = "dojo_dashboard"
LOG_TAIL_BYTES = 64 * 1024  # of the log shown when a job page opens
LOG_CHUNK_BYTES = 1 << 20  # most bytes one log poll returns
MAX_CHART_ROWS = 100_000  # metric rows read for the charts; beyond that every k-th row
MAX_PODS = 8  # ExaPODs the map will draw
PAGE_SIZE = 50
MAX_TOKEN_CHARS = 200

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_NEXT_RE = re.compile(r"^/dashboard(/[A-Za-z0-9_./-]*)?(\?[A-Za-z0-9_=&,.%-]*)?$")
_UNIT_RE = re.compile(r"^/?exapod(\d+)(/|$)")
_SYSTEM_RE = re.compile(r"^exapod(?::(\d+))?$")  # the scheduler's "system", e.g. exapod:2
CHIP_KEYS = ("chip_ranges", "chips", "blocks", "tiles", "block")


class _Answer(Exception):  # noqa: N818 - not an error: a response to send instead
    """Raised below a dashboard route to answer with ``response`` (a redirect, an error page)."""

    def __init__(self, response: Response) -> None:
        super().__init__()
        self.response = response


class _SecuredRoute(APIRoute):
    """Every dashboard answer gets the security headers; an :class:`_Answer` becomes its response."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def secured(request: Request) -> Response:
            try:
                response = await handler(request)
            except _Answer as answer:
                response = answer.response
            for key, value in SECURITY_HEADERS.items():
                response.headers.setdefault(key, value)
            return response

        return secured


router = APIRouter(prefix=ROOT, include_in_schema=False, route_class=_SecuredRoute)


# --- who is looking -------------------------------------------------------------------------


@dataclass(frozen=True)
class Viewer:
    role: str  # tenant | admin
    tenant_id: str | None
    label: str  # the tenant's name, or "admin"

    @property
    def admin(self) -> bool:
        return self.role == "admin"


def _ctx(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


def _authenticate(request: Request) -> Viewer:
    """The viewer from the Bearer header or the login cookie; ApiError 401/403 otherwise."""
    header = request.headers.get("authorization")
    if not header:
        cookie = request.cookies.get(COOKIE)
        header = f"Bearer {cookie}" if cookie else None
    with _ctx(request).db.session() as s:
        p = authenticate(s, header)
        if p.tenant_id is None:
            return Viewer(role=p.role, tenant_id=None, label="admin")
        tenant = s.get(Tenant, p.tenant_id)
        return Viewer(
            role=p.role, tenant_id=p.tenant_id, label=tenant.name if tenant else p.tenant_id
        )


def page_viewer(request: Request) -> Viewer:
    """For pages: a missing or bad token sends the browser to the login page."""
    try:
        return _authenticate(request)
    except ApiError as e:
        if e.status != 401:
            raise _Answer(_error_page(e.status, "Not allowed", e.detail, None)) from None
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        to = f"{ROOT}/login" + (f"?{urlencode({'next': target})}" if _safe_next(target) else "")
        response = RedirectResponse(to, status_code=303)
        if request.cookies.get(COOKIE):
            response.delete_cookie(COOKIE, path=ROOT)
        raise _Answer(response) from None


def data_viewer(request: Request) -> Viewer:
    """For what the page's script fetches: 401/403 as plain text."""
    try:
        return _authenticate(request)
    except ApiError as e:
        raise _Answer(
            Response(e.detail, status_code=e.status, media_type="text/plain; charset=utf-8")
        ) from None


PageViewer = Annotated[Viewer, Depends(page_viewer)]
DataViewer = Annotated[Viewer, Depends(data_viewer)]


def _safe_next(target: str) -> str:
    """A dashboard path to go to after logging in, or "" (never another site)."""
    return (
        target if _NEXT_RE.fullmatch(target) and "//" not in target and ".." not in target else ""
    )


def _same_origin(request: Request) -> None:
    """POSTs must come from the dashboard's own pages (no login or logout from other sites)."""
    site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    bad = (site is not None and site not in ("same-origin", "none")) or (
        origin is not None and urlsplit(origin).netloc != request.headers.get("host", "")
    )
    if bad:
        raise _Answer(
            _error_page(
                403, "Not allowed", "This form must be sent from the dashboard itself.", None
            )
        )


# --- pages ----------------------------------------------------------------------------------


def _page(template: str, viewer: Viewer | None, status: int = 200, **values: Any) -> HTMLResponse:
    html = render(
        template,
        root=ROOT,
        who=viewer.label if viewer else "",
        refresh=values.pop("refresh", 0),
        **values,
    )
    return HTMLResponse(html, status_code=status)


def _error_page(status: int, title: str, message: str, viewer: Viewer | None) -> HTMLResponse:
    return _page("error", viewer, status, title=title, message=message)


@router.get("/login")
def login_form(request: Request, next: Annotated[str, Query(max_length=300)] = "") -> HTMLResponse:
    return _page("login", None, title="Log in", error="", next=_safe_next(next))


@router.post("/login")
async def login(request: Request) -> Response:
    """Check the token; keep it in an HttpOnly, SameSite=Strict cookie; go on to ``next``."""
    _same_origin(request)
    body = await request.body()
    try:
        form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=4)
    except ValueError:
        form = {}
    token = (form.get("token") or [""])[0].strip()
    target = _safe_next((form.get("next") or [""])[0]) or ROOT
    ctx = _ctx(request)

    def check() -> tuple[str | None, int | None]:
        if (
            not token
            or len(token) > MAX_TOKEN_CHARS
            or not token.isascii()
            or not token.isprintable()
        ):
            return "Invalid or revoked token.", None
        with ctx.db.session() as s:
            try:
                authenticate(s, f"Bearer {token}")
            except ApiError as e:
                return e.detail, None
            expires = aware(
                s.scalar(select(Token.expires_at).where(Token.hash == hash_token(token)))
            )
        return None, (max(1, int((expires - utcnow()).total_seconds())) if expires else None)

    error, max_age = await run_in_threadpool(check)
    if error:
        return _page("login", None, 401, title="Log in", error=error, next=target)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        max_age=max_age,
        path=ROOT,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    _same_origin(request)
    response = RedirectResponse(f"{ROOT}/login", status_code=303)
    response.delete_cookie(COOKIE, path=ROOT, httponly=True, samesite="strict")
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
    with _ctx(request).db.session() as s:
        view = compute_map(s, viewer)
        jobs = _job_rows(s, viewer, statuses=ACTIVE, limit=PAGE_SIZE, offset=0)[0]
    return _page(
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
    )


@router.get("/jobs")
def jobs_page(
    request: Request,
    viewer: PageViewer,
    status: Annotated[str, Query(max_length=200)] = "",
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> HTMLResponse:
    wanted = tuple(x for x in status.split(",") if x in STATUSES) if status else ()
    with _ctx(request).db.session() as s:
        jobs, total = _job_rows(s, viewer, statuses=wanted or None, limit=PAGE_SIZE, offset=offset)

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
    return _page(
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
    with _ctx(request).db.session() as s:
        job = _visible_job(s, viewer, job_id, page=True)
        start = max(0, job.log_bytes - LOG_TAIL_BYTES)
        data = jobstore.read_log(s, job.id, start, LOG_TAIL_BYTES)
        charts = job_charts(_chart_rows(s, job))
        tenant = s.get(Tenant, job.tenant_id) if viewer.admin else None
    facts: list[tuple[str, object]] = [("kind", job.kind)]
    if viewer.admin:
        facts.append(("tenant", tenant.name if tenant else job.tenant_id))
    facts += [
        ("priority", job.priority),
        ("compute", f"{job.compute_count} {job.compute_unit}"),
        ("where", _where(job.placement)),
        ("attempt", f"{job.attempt} of {job.max_attempts}"),
        ("agent", job.agent or "–"),
        ("exit code", "–" if job.exit_code is None else job.exit_code),
        ("created", _time(job.created_at)),
        ("started", _time(job.started_at)),
        ("finished", _time(job.finished_at)),
        ("heartbeat", _time(job.heartbeat_at)),
        ("log", f"{job.log_bytes:,} bytes"),
        ("metric rows", f"{job.metric_rows:,}"),
    ]
    return _page(
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
    with _ctx(request).db.session() as s:
        job = _visible_job(s, viewer, job_id, page=False)
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
    with _ctx(request).db.session() as s:
        job = _visible_job(s, viewer, job_id, page=False)
        charts = job_charts(_chart_rows(s, job))
    return HTMLResponse(render("charts", charts=charts))


# --- data for the pages --------------------------------------------------------------------------


def _visible_job(s: Session, viewer: Viewer, job_id: str, *, page: bool) -> Job:
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
            raise _Answer(_error_page(404, "Not found", e.detail, viewer)) from None
        raise _Answer(
            Response(e.detail, status_code=404, media_type="text/plain; charset=utf-8")
        ) from None


def _time(t: datetime | None) -> str:
    t = aware(t)
    return t.strftime("%Y-%m-%d %H:%M:%SZ") if t else "–"


def _where(placement: Any) -> str:
    """A short summary of a placement for tables."""
    if not placement:
        return "–"
    if isinstance(placement, dict):
        if placement.get("resource") == "gpus" and isinstance(placement.get("count"), int):
            return f"{placement['count']} GPUs"
        for key in ("block", "blocks", "tiles", "hosts", "chips"):
            value = placement.get(key)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, list) and value:
                first = value[0]
                if key == "chips":
                    n = sum(
                        v[1] - v[0]
                        if isinstance(v, list)
                        and len(v) == 2
                        and all(isinstance(x, int) for x in v)
                        else 1
                        for v in value
                    )
                    return f"{n} chip{'s' if n != 1 else ''}"
                more = f" (+{len(value) - 1})" if len(value) > 1 else ""
                return f"{first if isinstance(first, (str, int)) else '…'}{more}"
    return "placed"


def _job_rows(
    s: Session, viewer: Viewer, *, statuses: Iterable[str] | None, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    from sqlalchemy import func

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
            "where": _where(j.placement),
            "created": _time(j.created_at),
        }
        for j, tenant in rows
    ], int(total)


def _chart_rows(s: Session, job: Job) -> list[tuple[int, dict[str, object]]]:
    keys = ("step", "loss", "val_loss", "nines", "nines_low", "nines_high")
    q = select(MetricRow.seq, MetricRow.data).where(MetricRow.job_id == job.id)
    if job.metric_rows > MAX_CHART_ROWS:
        stride = math.ceil(job.metric_rows / MAX_CHART_ROWS)
        q = q.where((MetricRow.seq % stride == 0) | (MetricRow.seq == job.metric_rows))
    out: list[tuple[int, dict[str, object]]] = []
    for seq, data in s.execute(q.order_by(MetricRow.seq)).yield_per(2000):
        if isinstance(data, dict):
            row = {k: data[k] for k in keys if k in data}
            if len(row) > ("step" in row):
                out.append((int(seq), row))
    return out


# --- the map ---------------------------------------------------------------------------------


@cache
def exapods(count: int) -> Topology:
    return Topology(load_family("dojo.toml"), "exapod", count)


def _names(placement: dict[str, Any], key: str) -> list[Any]:
    value = placement.get(key)
    if value is None:
        return []
    if isinstance(value, (str, int)):
        return [value]
    if isinstance(value, list):
        return [v.get("name", v.get("block")) if isinstance(v, dict) else v for v in value]
    raise ValueError(f"placement {key!r} is neither a name nor a list")


def placement_chips(placement: Any, topology: Topology) -> list[int] | None:
    """The chips of ``topology`` a placement names, or None when it names none (a GPU job).

    Read, first match wins: ``chip_ranges`` (``[first, stop)`` pairs, what the scheduler in
    :mod:`dojo.service.sched.dispatch` writes), ``chips`` (chip numbers, or such pairs), ``blocks``
    (block names at any level, e.g. ``exapod0/cabinet3/tray1/tile4``), ``tiles`` (tile names or
    tile numbers), ``block`` (one name: the whole block). A bare list is read as ``blocks``.
    Anything else that is malformed or outside the topology raises ValueError.
    """
    if isinstance(placement, list):
        placement = {"blocks": placement}
    if not isinstance(placement, dict):
        raise ValueError("placement is not an object")
    total = topology.total_chips
    chips: list[int] = []
    try:
        if placement.get("chip_ranges") is not None:
            for item in placement["chip_ranges"]:
                if not (
                    isinstance(item, list)
                    and len(item) == 2
                    and all(isinstance(v, int) and not isinstance(v, bool) for v in item)
                ):
                    raise ValueError(f"chip range {item!r} is not a [first, stop) pair")
                first, stop = item
                if not 0 <= first <= stop <= total:
                    raise ValueError(f"chip range {item} is outside 0..{total}")
                chips.extend(range(first, stop))
        elif placement.get("chips") is not None:
            for item in placement["chips"]:
                if isinstance(item, int) and not isinstance(item, bool):
                    chips.append(item)
                elif (
                    isinstance(item, list)
                    and len(item) == 2
                    and all(isinstance(v, int) and not isinstance(v, bool) for v in item)
                ):
                    first, stop = item
                    if not 0 <= first <= stop <= total:
                        raise ValueError(f"chip range {item} is outside 0..{total}")
                    chips.extend(range(first, stop))
                else:
                    raise ValueError(
                        f"chip entry {item!r} is neither a number nor a [first, stop) pair"
                    )
        else:
            for key in ("blocks", "tiles", "block"):
                entries = _names(placement, key)
                if not entries:
                    continue
                for entry in entries:
                    if isinstance(entry, int) and not isinstance(entry, bool) and key == "tiles":
                        chips.extend(topology.block(1, entry).chips)
                    elif isinstance(entry, str):
                        chips.extend(topology.find(entry).chips)
                    else:
                        raise ValueError(f"{key} entry {entry!r} is not a block name")
                break
    except DojoConfigError as e:
        raise ValueError(str(e)) from None
    except TypeError:
        raise ValueError("placement chips is not a list") from None
    if not chips:
        return None
    if min(chips) < 0 or max(chips) >= total:
        raise ValueError(f"chip numbers must be within 0..{total - 1}")
    return chips


def units_needed(placements: Iterable[Any]) -> int:
    """How many ExaPODs the map needs to show every placement (1 at least, MAX_PODS at most)."""
    top = 0
    per_unit = exapods(1).total_chips
    for p in placements:
        if not isinstance(p, (dict, list)):
            continue
        d = {"blocks": p} if isinstance(p, list) else p
        for key in ("blocks", "tiles", "block"):
            try:
                names = _names(d, key)
            except ValueError:
                continue
            for name in names:
                m = _UNIT_RE.match(name) if isinstance(name, str) else None
                if m:
                    top = max(top, int(m.group(1)))
        system = d.get("system")
        m = _SYSTEM_RE.match(system) if isinstance(system, str) else None
        if m:
            top = max(top, int(m.group(1) or 1) - 1)
        for key in ("chip_ranges", "chips"):
            chips = d.get(key)
            if not isinstance(chips, list):
                continue
            for item in chips:
                last = (
                    item[-1] - 1
                    if isinstance(item, list) and item and isinstance(item[-1], int)
                    else item
                )
                if isinstance(last, int) and not isinstance(last, bool) and last >= 0:
                    top = max(top, last // per_unit)
    return min(max(1, top + 1), MAX_PODS)


def _is_gpu(placement: Any) -> bool:
    """A GPU placement: ``resource: gpus``, or hosts without any chips."""
    return isinstance(placement, dict) and (
        placement.get("resource") == "gpus"
        or ("hosts" in placement and not any(k in placement for k in CHIP_KEYS))
    )


def _hosts(placement: Any) -> list[str]:
    if not isinstance(placement, dict) or not isinstance(placement.get("hosts"), list):
        return []
    out = []
    for h in placement["hosts"]:
        name = h.get("host", h.get("name")) if isinstance(h, dict) else h
        if isinstance(name, str) and name:
            out.append(name[:200])
    return out


@dataclass
class MapView:
    svg: str
    summary: str
    legend: list[dict[str, Any]]
    gpu_jobs: list[dict[str, Any]]
    unplaced: str


def compute_map(s: Session, viewer: Viewer) -> MapView:
    """The map of every placed job: the viewer's own (all, for an admin) by name, others as busy."""
    q = (
        select(Job.id, Job.tenant_id, Job.name, Job.status, Job.placement, Tenant.name)
        .join(Tenant, Tenant.id == Job.tenant_id)
        .where(Job.status.in_(("placed", "running", "cancelling")))
        .order_by(Tenant.name, Job.created_at, Job.id)
    )
    rows = [r for r in s.execute(q).all() if r[4]]
    topology = exapods(units_needed(r[4] for r in rows))
    busy = Owner(key="busy", label="busy", fill=BUSY_FILL)
    owners: list[Owner] = [busy]
    owner_of_chip = [-1] * topology.total_chips
    legend: dict[str, list[dict[str, Any]]] = {}
    gpu_jobs: list[dict[str, Any]] = []
    tenant_colour: dict[str, str] = {}
    bad = overlaps = 0
    used = {"yours": 0, "busy": 0}
    for job_id, tenant_id, name, status, placement, tenant_name in rows:
        mine = viewer.admin or tenant_id == viewer.tenant_id
        if mine:
            group = legend.setdefault(tenant_name if viewer.admin else "", [])
            if viewer.admin:
                base = tenant_colour.setdefault(
                    tenant_name, PALETTE[len(tenant_colour) % len(PALETTE)]
                )
                fill = shade(base, (len(group) % 4) * 0.22)
            else:
                fill = PALETTE[len(group) % len(PALETTE)]
            who = f"{tenant_name}: " if viewer.admin else ""
            preempting = (
                ", preempting" if isinstance(placement, dict) and placement.get("preempt") else ""
            )
            label = f"{who}{name or job_id} ({job_id}, {status}{preempting})"
            href = f"{ROOT}/jobs/{quote(job_id, safe='')}"
            owner = Owner(key=job_id, label=label, fill=fill, href=href)
            group.append({"label": f"{name or job_id} ({status})", "fill": fill, "href": href})
            owners.append(owner)
            index = len(owners) - 1
        else:
            owner, index = busy, 0
        if _is_gpu(placement):
            count = placement.get("count")
            gpu_jobs.append(
                {
                    "label": owner.label if mine else "busy",
                    "href": owner.href if mine else None,
                    "gpus": count if isinstance(count, int) else "?",
                    "hosts": ", ".join(_hosts(placement)) or "–",
                }
            )
            continue
        try:
            chips = placement_chips(placement, topology)
        except ValueError:
            bad += 1
            continue
        for c in chips or ():
            if owner_of_chip[c] == -1:
                owner_of_chip[c] = index
                used["yours" if mine else "busy"] += 1
            else:
                overlaps += 1
    total = topology.total_chips
    free = total - used["yours"] - used["busy"]
    unit = f"{topology.count} ExaPOD{'s' if topology.count > 1 else ''}"
    if viewer.admin:
        summary = f"{unit}: {total:,} D1 chips; {used['yours']:,} held by jobs, {free:,} free."
    else:
        summary = (
            f"{unit}: {total:,} D1 chips; {used['yours']:,} held by your jobs, "
            f"{used['busy']:,} by other tenants, {free:,} free."
        )
    notes = []
    if bad:
        notes.append(f"{bad} placement{'s' if bad > 1 else ''} could not be drawn.")
    if overlaps:
        notes.append(f"{overlaps} chips are claimed by more than one job (the first is shown).")
    return MapView(
        svg=map_svg(topology, owner_of_chip, owners),
        summary=summary,
        legend=[{"title": k, "items": v} for k, v in legend.items()],
        gpu_jobs=gpu_jobs,
        unplaced=" ".join(notes),
    )
