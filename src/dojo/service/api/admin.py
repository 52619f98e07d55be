"""Operator actions straight on the job store (no server needed): bootstrap tenants and tokens."""

from __future__ import annotations

from dataclasses import asdict
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import select

from dojo.errors import DojoConfigError
from dojo.service.api.auth import issue_token
from dojo.service.api.models import QuotasIn, TenantCreate
from dojo.service.api.problems import ApiError
from dojo.service.config import Quotas
from dojo.service.store.db import Database
from dojo.service.store.schema import Tenant
from dojo.service.store.tenants import create_tenant, set_quotas, tenant_by_ref, tenant_out


def _open(db_url: str) -> Database:
    db = Database(db_url)
    db.migrate()
    return db


def _quotas(values: dict[str, int | None]) -> QuotasIn:
    for key, value in values.items():
        if value is not None and value < 0:
            raise DojoConfigError(f"--{key.replace('_', '-')} {value} must be >= 0.")
    return QuotasIn(**values)


def tenant_create(db_url: str, name: str, quotas: dict[str, int | None]) -> dict[str, Any]:
    """A new tenant and its first token; the token is in the result and nowhere else."""
    try:
        TenantCreate(name=name)
    except ValueError:
        raise DojoConfigError(
            f"Tenant name {name!r} must be 1-64 letters, digits or '._-', "
            "starting with a letter or digit."
        ) from None
    db = _open(db_url)
    try:
        with db.session() as s:
            tenant, _, secret = create_tenant(s, name, _quotas(quotas), Quotas())
            return {**tenant_out(s, tenant).model_dump(mode="json"), "token": secret}
    except ApiError as e:
        raise DojoConfigError(e.detail) from None
    finally:
        db.dispose()


def tenant_list(db_url: str) -> list[dict[str, Any]]:
    db = _open(db_url)
    try:
        with db.session() as s:
            return [
                tenant_out(s, t).model_dump(mode="json")
                for t in s.scalars(select(Tenant).order_by(Tenant.name))
            ]
    finally:
        db.dispose()


def tenant_update(
    db_url: str, ref: str, quotas: dict[str, int | None], disabled: bool | None
) -> dict[str, Any]:
    db = _open(db_url)
    try:
        with db.session() as s:
            tenant = tenant_by_ref(s, ref)
            set_quotas(tenant, _quotas(quotas))
            if disabled is not None:
                tenant.disabled = disabled
            s.flush()
            return tenant_out(s, tenant).model_dump(mode="json")
    except ApiError as e:
        raise DojoConfigError(e.detail) from None
    finally:
        db.dispose()


def token_create(db_url: str, tenant: str | None, name: str) -> str:
    """A new token for ``tenant`` (id or name), or an admin token when ``tenant`` is None."""
    db = _open(db_url)
    try:
        with db.session() as s:
            tenant_id = tenant_by_ref(s, tenant).id if tenant is not None else None
            _, secret = issue_token(
                s, role="tenant" if tenant_id else "admin", tenant_id=tenant_id, name=name
            )
            return secret
    except ApiError as e:
        raise DojoConfigError(e.detail) from None
    finally:
        db.dispose()


def invoice(db_url: str, ref: str, month: str, prices_path: str | None = None) -> dict[str, Any]:
    """The tenant's bill for ``month`` (YYYY-MM, UTC): usage lines and their total.

    Each line's amount is rounded to the cent (half up) and the total is the sum of the rounded
    lines, so the printed lines always add up to the printed total.
    """
    from dojo.service import metering

    start, end = metering.month_window(month)
    prices = metering.load_prices(prices_path)
    db = _open(db_url)
    try:
        with db.session(readonly=True) as s:
            tenant = tenant_by_ref(s, ref)
            report = metering.usage(s, tenant.id, start, end, prices)
            name = tenant.name
    except ApiError as e:
        raise DojoConfigError(e.detail) from None
    finally:
        db.dispose()
    lines = []
    total = Decimal(0)
    for line in report.lines:
        amount = _cents(line.amount)
        total += amount
        lines.append({**asdict(line), "amount": float(amount)})
    usage = report.to_dict()
    return {
        "tenant": {"id": report.tenant_id, "name": name},
        "month": f"{start.year:04d}-{start.month:02d}",
        "from": usage["from"],
        "to": usage["to"],
        "as_of": usage["as_of"],
        "currency": report.currency,
        "lines": lines,
        "total": float(total),
        "jobs": report.jobs,
        "runs": report.runs,
        "by_system": usage["by_system"],
        "prices": prices.origin,
    }


def _cents(amount: float) -> Decimal:
    return Decimal(repr(amount)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _price(value: float) -> str:
    """A unit price with at least the cents and as many more digits as it has (0.0000315)."""
    text = f"{value:,.7f}".rstrip("0")
    decimals = len(text.split(".")[1])
    return text + "0" * max(0, 2 - decimals)


def format_invoice(inv: dict[str, Any]) -> str:
    """An invoice as the operator reads it: one line per item, then the total."""
    cur = inv["currency"]
    head = f"{'item':<14}{'quantity':>16}  {'unit':<10}{'unit price':>14}{'amount':>14}"
    out = [
        f"Invoice for {inv['tenant']['name']} ({inv['tenant']['id']}), {inv['month']}",
        f"usage from {inv['from']} to {inv['to']} (measured up to {inv['as_of']}), in {cur}",
        "",
        head,
        "-" * len(head),
    ]
    for line in inv["lines"]:
        out.append(
            f"{line['description']:<14}{line['quantity']:>16,.4f}  {line['unit']:<10}"
            f"{_price(line['unit_price']):>14}{line['amount']:>14,.2f}"
        )
    out += [
        "-" * len(head),
        f"{'total ' + cur:<54}{inv['total']:>14,.2f}",
        "",
        f"{inv['jobs']} jobs, {inv['runs']} runs; prices from {inv['prices']}",
    ]
    return "\n".join(out)
