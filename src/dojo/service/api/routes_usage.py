"""The caller's metered usage and its cost (:mod:`dojo.service.metering`)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from dojo.errors import ConfigError
from dojo.service import metering
from dojo.service.api.deps import Ctx, TenantId
from dojo.service.api.problems import ApiError
from dojo.service.store.schema import utcnow

log = logging.getLogger("dojo.service")
router = APIRouter(prefix="/v1", tags=["usage"])


class SystemUsageOut(BaseModel):
    chip_seconds: float
    gpu_seconds: float
    energy_kwh: float
    runs: int


class UsageLineOut(BaseModel):
    item: str
    description: str
    quantity: float
    unit: str
    unit_price: float
    amount: float


class UsageOut(BaseModel):
    """Usage over [from, to), measured up to ``as_of`` (``to``, or now if ``to`` is later);
    ``cost`` is the sum of ``lines``."""

    model_config = ConfigDict(populate_by_name=True)

    tenant_id: str
    from_: str = Field(alias="from")
    to: str
    as_of: str
    chip_seconds: float
    gpu_seconds: float
    storage_gb_hours: float
    energy_kwh: float
    cost: float
    currency: str
    jobs: int
    runs: int
    by_system: dict[str, SystemUsageOut]
    lines: list[UsageLineOut]


@router.get("/usage", response_model=UsageOut, response_model_by_alias=True)
def get_usage(
    ctx: Ctx,
    tenant_id: TenantId,
    from_: Annotated[
        str | None,
        Query(
            alias="from",
            max_length=64,
            description="ISO 8601 date or date-time (UTC if no zone); default: this month's start",
        ),
    ] = None,
    to: Annotated[
        str | None,
        Query(max_length=64, description="ISO 8601 date or date-time; default: now"),
    ] = None,
) -> UsageOut:
    """The caller's chip- and GPU-seconds (by system), storage GB-hours, energy and cost."""
    now = utcnow()
    try:
        start = metering.parse_instant(from_, "from") if from_ else metering.month_start(now)
        end = metering.parse_instant(to, "to") if to else now
        if end < start:
            raise ConfigError(f"to={to or 'now'} is before from={from_ or start.date()}.")
    except ConfigError as e:
        raise ApiError(422, str(e)) from None
    try:
        prices = metering.load_prices()
    except ConfigError as e:  # the operator's file: say so in the log, not to the tenant
        log.error("price list: %s", e)
        raise ApiError(503, "The service's price list is unavailable; tell its operator.") from None
    with ctx.db.session(readonly=True) as s:
        report = metering.usage(s, tenant_id, start, end, prices, now=now)
    return UsageOut.model_validate(report.to_dict())
