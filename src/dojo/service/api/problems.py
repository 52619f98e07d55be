"""HTTP errors with one clear sentence: ``{"detail": "...", ...extra}``."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """Raised anywhere below a route; the app turns it into a JSON response."""

    def __init__(self, status: int, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.extra = extra


def not_found(what: str, ident: str) -> ApiError:
    """The same answer whether the object does not exist or belongs to another tenant."""
    return ApiError(404, f"{what} {ident!r} not found.")


def quota_exceeded(quota: str, limit: int, used: int, asked: int, unit: str) -> ApiError:
    return ApiError(
        403,
        f"Quota {quota} exceeded: {used} {unit} in use + {asked} asked > limit {limit}.",
        code="quota_exceeded",
        quota=quota,
        limit=limit,
        used=used,
        requested=asked,
    )
