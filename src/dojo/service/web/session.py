"""Who is looking at the dashboard: tokens from the header or the login cookie, the login check,
the same-origin rule for its POSTs, and the security headers on every answer.

The API never reads the cookie, so cookie-carrying cross-site requests can do nothing there;
the dashboard only reads, and its two POSTs (login, logout) refuse other origins. Every answer
carries a strict Content-Security-Policy (own script and stylesheet only, nothing inline,
nothing fetched from elsewhere).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from sqlalchemy import select

from dojo.service.api.auth import authenticate, hash_token
from dojo.service.api.deps import Context
from dojo.service.api.problems import ApiError
from dojo.service.store.schema import Tenant, Token, aware, utcnow
from dojo.service.web.html import render

ROOT = "/dashboard"
COOKIE = "dojo_dashboard"
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


class Answer(Exception):  # noqa: N818 - not an error: a response to send instead
    """Raised below a dashboard route to answer with ``response`` (a redirect, an error page)."""

    def __init__(self, response: Response) -> None:
        super().__init__()
        self.response = response


class SecuredRoute(APIRoute):
    """Every dashboard answer gets the security headers; an :class:`Answer` becomes its response."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def secured(request: Request) -> Response:
            try:
                response = await handler(request)
            except Answer as answer:
                response = answer.response
            for key, value in SECURITY_HEADERS.items():
                response.headers.setdefault(key, value)
            return response

        return secured


@dataclass(frozen=True)
class Viewer:
    role: str  # tenant | admin
    tenant_id: str | None
    label: str  # the tenant's name, or "admin"

    @property
    def admin(self) -> bool:
        return self.role == "admin"


def context(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


def page(template: str, viewer: Viewer | None, status: int = 200, **values: Any) -> HTMLResponse:
    html = render(
        template,
        root=ROOT,
        who=viewer.label if viewer else "",
        refresh=values.pop("refresh", 0),
        **values,
    )
    return HTMLResponse(html, status_code=status)


def error_page(status: int, title: str, message: str, viewer: Viewer | None) -> HTMLResponse:
    return page("error", viewer, status, title=title, message=message)


def plain(text: str, status: int) -> Response:
    return Response(text, status_code=status, media_type="text/plain; charset=utf-8")


def _authenticate(request: Request) -> Viewer:
    """The viewer from the Bearer header or the login cookie; ApiError 401/403 otherwise."""
    header = request.headers.get("authorization")
    if not header:
        cookie = request.cookies.get(COOKIE)
        header = f"Bearer {cookie}" if cookie else None
    with context(request).db.session() as s:
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
            raise Answer(error_page(e.status, "Not allowed", e.detail, None)) from None
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        to = f"{ROOT}/login" + (f"?{urlencode({'next': target})}" if safe_next(target) else "")
        response = RedirectResponse(to, status_code=303)
        if request.cookies.get(COOKIE):
            response.delete_cookie(COOKIE, path=ROOT)
        raise Answer(response) from None


def data_viewer(request: Request) -> Viewer:
    """For what the page's script fetches: 401/403 as plain text."""
    try:
        return _authenticate(request)
    except ApiError as e:
        raise Answer(plain(e.detail, e.status)) from None


PageViewer = Annotated[Viewer, Depends(page_viewer)]
DataViewer = Annotated[Viewer, Depends(data_viewer)]


def safe_next(target: str) -> str:
    """A dashboard path to go to after logging in, or "" (never another site)."""
    return (
        target if _NEXT_RE.fullmatch(target) and "//" not in target and ".." not in target else ""
    )


def same_origin(request: Request) -> None:
    """POSTs must come from the dashboard's own pages (no login or logout from other sites)."""
    site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    bad = (site is not None and site not in ("same-origin", "none")) or (
        origin is not None and urlsplit(origin).netloc != request.headers.get("host", "")
    )
    if bad:
        raise Answer(
            error_page(
                403, "Not allowed", "This form must be sent from the dashboard itself.", None
            )
        )


def check_login(ctx: Context, token: str) -> tuple[str | None, int | None]:
    """(why the token is refused, None) or (None, the cookie's lifetime in seconds or None)."""
    if not token or len(token) > MAX_TOKEN_CHARS or not token.isascii() or not token.isprintable():
        return "Invalid or revoked token.", None
    with ctx.db.session() as s:
        try:
            authenticate(s, f"Bearer {token}")
        except ApiError as e:
            return e.detail, None
        expires = aware(s.scalar(select(Token.expires_at).where(Token.hash == hash_token(token))))
    return None, (max(1, int((expires - utcnow()).total_seconds())) if expires else None)


def keep_login(request: Request, response: Response, token: str, max_age: int | None) -> None:
    """The token in an HttpOnly, SameSite=Strict cookie for the dashboard's paths only."""
    response.set_cookie(
        COOKIE,
        token,
        max_age=max_age,
        path=ROOT,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def forget_login(response: Response) -> None:
    response.delete_cookie(COOKIE, path=ROOT, httponly=True, samesite="strict")
