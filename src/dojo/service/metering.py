"""Metering: what a tenant used over a time window, and what it costs by the price list.

Usage over the window ``[start, end)`` is read from two tables the job store keeps for it:

- ``job_runs``, one row per run of a job (opened when an agent claims it, closed however it
  ends): device-seconds = chips (or GPUs) x the part of the run inside the window. A run still
  open counts up to now. Every run counts, succeeded, failed, cancelled, preempted or lost (a
  lost run ends at its last heartbeat): the devices were held for the tenant either way.
- ``storage_changes`` (+bytes stored, -bytes deleted): the tenant's stored bytes are a step
  function of time; storage GB-hours = its integral over the window / (1e9 x 3600). A GB is
  1e9 bytes, as storage is sold.

Energy [kWh] = device-seconds x the watts of one device in the planner's power model
(:mod:`dojo.compute.topology`) / 3.6e6. One device's watts are its TDP plus its share of the
overhead power of every block above it: the family's whole system divided by its devices
(600 W a D1: 400 W and 1/25 of its tile's 5 kW; 1,275 W an H100: 700 W and 1/8 of its DGX
node's 4.6 kW). A share, not the whole blocks a job touches as :func:`dojo.compute.perf.plan`
counts for a plan, so that a tenant's bill does not depend on whom it shares a tile with. The
family is the one of the run's ``system`` (the scheduler's, e.g. ``exapod:2``); a run without
one is a D1 run for chips and an H100 run for GPUs (GPU placements name no system).

Cost = the sum of the lines: D1 chip-hours, GPU-hours, storage GB-hours and kWh, each times its
price in ``prices.toml`` (or the file ``$DOJO_PRICES`` names), in the list's one currency.
Usage is measured up to now: a window reaching into the future is measured up to ``as_of``.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from dojo.compute.specs import Family, packaged_families
from dojo.compute.topology import Topology, parse_system
from dojo.errors import ConfigError
from dojo.service.store.schema import JobRun, StorageChange, aware, utcnow

log = logging.getLogger("dojo.service.metering")

GB = 1e9  # bytes: storage is sold in decimal gigabytes
PRICES_ENV = "DOJO_PRICES"  # a price list of the operator's own, instead of the packaged one
CHIP_FAMILY, GPU_FAMILY = "dojo", "h100"  # a run's family when its placement names no system
# the by_system keys of runs whose placement named no system: chips an agent took without the
# scheduler, and GPUs (a GPU placement is a count of GPUs on whatever host runs it)
UNNAMED_CHIPS, UNNAMED_GPUS = "d1", "gpu"
_CURRENCY = re.compile(r"[A-Z]{3}")  # an ISO 4217 code

# price key -> (line description, unit of the quantity)
PRICE_ITEMS: Mapping[str, tuple[str, str]] = {
    "d1_chip_hour": ("D1 chip time", "chip-hour"),
    "gpu_hour": ("GPU time", "GPU-hour"),
    "storage_gb_hour": ("storage", "GB-hour"),
    "kwh": ("energy", "kWh"),
}


@dataclass(frozen=True)
class Prices:
    """A price list: one currency, a price per unit of each item, and where each price is from."""

    currency: str
    d1_chip_hour: float
    gpu_hour: float
    storage_gb_hour: float
    kwh: float
    sources: Mapping[str, str] = field(default_factory=dict)
    origin: str = "prices.toml"

    def price(self, key: str) -> float:
        return float(getattr(self, key))


def prices_from_dict(data: Mapping[str, Any], origin: str = "prices.toml") -> Prices:
    """A validated price list from its TOML tables; a ConfigError naming the bad value."""
    where = f"Price list {origin}"
    extra = sorted(set(data) - {"currency", "prices"})
    if extra:
        raise ConfigError(f"{where}: unknown key {extra[0]!r} (expected currency and [prices]).")
    currency = data.get("currency")
    if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
        raise ConfigError(
            f"{where}: currency = {currency!r} must be a three-letter ISO 4217 code like 'USD'."
        )
    table = data.get("prices")
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: a [prices] table is missing.")
    unknown = sorted(set(table) - set(PRICE_ITEMS))
    if unknown:
        raise ConfigError(
            f"{where}: prices.{unknown[0]} is not a price this service bills "
            f"(one of {', '.join(PRICE_ITEMS)})."
        )
    values: dict[str, float] = {}
    sources: dict[str, str] = {}
    for key in PRICE_ITEMS:
        entry = table.get(key)
        if entry is None:
            raise ConfigError(f"{where}: prices.{key} is missing.")
        if not isinstance(entry, Mapping) or set(entry) != {"value", "source"}:
            raise ConfigError(f'{where}: prices.{key} must be {{ value = ..., source = "..." }}.')
        value, source = entry["value"], entry["source"]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < 0
        ):
            raise ConfigError(f"{where}: prices.{key} = {value!r} must be a number >= 0.")
        if not isinstance(source, str) or not source.strip():
            raise ConfigError(
                f"{where}: prices.{key} needs a source saying where the price is from."
            )
        values[key], sources[key] = float(value), source
    return Prices(currency=currency, sources=sources, origin=origin, **values)


def load_prices(path: str | Path | None = None) -> Prices:
    """The price list at ``path``; else ``$DOJO_PRICES``'s; else the packaged ``prices.toml``."""
    chosen = path if path is not None else os.environ.get(PRICES_ENV) or None
    if chosen is None:
        return packaged_prices()
    p = Path(chosen)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"Price list {p} cannot be read ({e}).") from None
    return _parse(text, str(p))


@cache
def packaged_prices() -> Prices:
    text = resources.files("dojo.service").joinpath("prices.toml").read_text(encoding="utf-8")
    return _parse(text, "prices.toml")


def _parse(text: str, origin: str) -> Prices:
    try:
        import tomllib as toml
    except ModuleNotFoundError:  # Python 3.10
        import tomli as toml  # type: ignore[no-redef]
    try:
        data = toml.loads(text)
    except toml.TOMLDecodeError as e:
        raise ConfigError(f"Price list {origin} is not valid TOML ({e}).") from None
    return prices_from_dict(data, origin)


# --- the power model ------------------------------------------------------------------------


@cache
def device_watts(system: str | None, gpu: bool) -> float:
    """Watts one chip (or GPU) of ``system`` draws, its share of block overheads included."""
    family = _family(system, gpu)
    whole = Topology(family)  # one unit of the family's top level: every block above the chip
    return whole.power_w(whole.top) / whole.chips_per_block(whole.top)


def _family(system: str | None, gpu: bool) -> Family:
    families = packaged_families()
    default = GPU_FAMILY if gpu else CHIP_FAMILY
    if system:
        try:
            return parse_system(system, families).family
        except ConfigError:
            # a stored placement names a system these specs no longer have: bill its devices at
            # the default family's power rather than refuse the tenant's whole usage
            log.warning("metering: unknown system %r; using the %s power model", system, default)
    return families[default]


# --- usage ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SystemUsage:
    """Usage on one system (the scheduler's name for it, else ``d1`` or ``gpu``)."""

    chip_seconds: float = 0.0
    gpu_seconds: float = 0.0
    energy_kwh: float = 0.0
    runs: int = 0


@dataclass(frozen=True)
class Line:
    """One line of a bill: ``quantity`` ``unit`` at ``unit_price`` = ``amount``."""

    item: str  # the price key, e.g. d1_chip_hour
    description: str
    quantity: float
    unit: str
    unit_price: float
    amount: float


@dataclass(frozen=True)
class UsageReport:
    tenant_id: str
    start: datetime
    end: datetime
    as_of: datetime  # what is measured ends here: ``end``, or now when the window reaches past it
    chip_seconds: float
    gpu_seconds: float
    storage_gb_hours: float
    energy_kwh: float
    jobs: int  # distinct jobs with a run in the window
    runs: int
    by_system: Mapping[str, SystemUsage]
    lines: tuple[Line, ...]
    currency: str

    @property
    def cost(self) -> float:
        return sum(line.amount for line in self.lines)

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``GET /v1/usage``."""
        return {
            "tenant_id": self.tenant_id,
            "from": _iso(self.start),
            "to": _iso(self.end),
            "as_of": _iso(self.as_of),
            "chip_seconds": self.chip_seconds,
            "gpu_seconds": self.gpu_seconds,
            "storage_gb_hours": self.storage_gb_hours,
            "energy_kwh": self.energy_kwh,
            "cost": self.cost,
            "currency": self.currency,
            "jobs": self.jobs,
            "runs": self.runs,
            "by_system": {name: asdict(u) for name, u in self.by_system.items()},
            "lines": [asdict(line) for line in self.lines],
        }


def usage(
    s: Session,
    tenant_id: str,
    start: datetime,
    end: datetime,
    prices: Prices | None = None,
    *,
    now: datetime | None = None,
) -> UsageReport:
    """The tenant's usage over ``[start, end)`` (naive datetimes are UTC) and its cost."""
    start, end = _utc(start), _utc(end)
    if end < start:
        raise ConfigError(f"The window's end {_iso(end)} is before its start {_iso(start)}.")
    prices = prices or load_prices()
    now = _utc(now or utcnow())
    until = max(start, min(end, now))  # nothing is measured beyond now

    by_system: dict[str, dict[str, float]] = {}
    jobs: set[str] = set()
    runs = 0
    rows = s.execute(
        select(
            JobRun.job_id,
            JobRun.chips,
            JobRun.gpus,
            JobRun.system,
            JobRun.started_at,
            JobRun.ended_at,
        )
        .where(
            JobRun.tenant_id == tenant_id,
            JobRun.started_at < end,
            or_(JobRun.ended_at.is_(None), JobRun.ended_at >= start),
        )
        .order_by(JobRun.id)
    ).all()
    for job_id, chips, gpus, system, started_at, ended_at in rows:
        began = _utc(started_at)
        ended = _utc(ended_at) if ended_at is not None else now
        if began < start and ended <= start:
            continue  # ended just as the window began: not a run in it
        seconds = max(0.0, (min(ended, until) - max(began, start)).total_seconds())
        runs += 1
        jobs.add(job_id)
        row = by_system.setdefault(
            system or (UNNAMED_GPUS if gpus else UNNAMED_CHIPS),
            {"chip": 0.0, "gpu": 0.0, "kwh": 0.0, "runs": 0},
        )
        row["chip"] += chips * seconds
        row["gpu"] += gpus * seconds
        row["kwh"] += (
            chips * seconds * device_watts(system, False)
            + gpus * seconds * device_watts(system, True)
        ) / 3.6e6
        row["runs"] += 1

    systems = {
        name: SystemUsage(
            chip_seconds=r["chip"], gpu_seconds=r["gpu"], energy_kwh=r["kwh"], runs=int(r["runs"])
        )
        for name, r in sorted(by_system.items())
    }
    chip_s = sum(u.chip_seconds for u in systems.values())
    gpu_s = sum(u.gpu_seconds for u in systems.values())
    kwh = sum(u.energy_kwh for u in systems.values())
    gb_hours = _storage_gb_hours(s, tenant_id, start, until)
    quantities = {
        "d1_chip_hour": chip_s / 3600.0,
        "gpu_hour": gpu_s / 3600.0,
        "storage_gb_hour": gb_hours,
        "kwh": kwh,
    }
    lines = tuple(
        Line(
            item=key,
            description=description,
            quantity=quantities[key],
            unit=unit,
            unit_price=prices.price(key),
            amount=quantities[key] * prices.price(key),
        )
        for key, (description, unit) in PRICE_ITEMS.items()
    )
    return UsageReport(
        tenant_id=tenant_id,
        start=start,
        end=end,
        as_of=until,
        chip_seconds=chip_s,
        gpu_seconds=gpu_s,
        storage_gb_hours=gb_hours,
        energy_kwh=kwh,
        jobs=len(jobs),
        runs=runs,
        by_system=systems,
        lines=lines,
        currency=prices.currency,
    )


def _storage_gb_hours(s: Session, tenant_id: str, start: datetime, until: datetime) -> float:
    """The integral of the tenant's stored bytes over ``[start, until)``, in GB-hours."""
    if until <= start:
        return 0.0
    stored = int(
        s.scalar(
            select(func.coalesce(func.sum(StorageChange.delta_bytes), 0)).where(
                StorageChange.tenant_id == tenant_id, StorageChange.at < start
            )
        )
        or 0
    )
    byte_seconds = 0.0
    t = start
    changes = s.execute(
        select(StorageChange.at, StorageChange.delta_bytes)
        .where(
            StorageChange.tenant_id == tenant_id,
            StorageChange.at >= start,
            StorageChange.at < until,
        )
        .order_by(StorageChange.at, StorageChange.id)
    ).all()
    for at, delta in changes:
        moment = _utc(at)
        byte_seconds += max(stored, 0) * (moment - t).total_seconds()
        stored += int(delta)
        t = moment
    byte_seconds += max(stored, 0) * (until - t).total_seconds()
    return byte_seconds / GB / 3600.0


# --- windows --------------------------------------------------------------------------------


def month_window(month: str) -> tuple[datetime, datetime]:
    """``YYYY-MM`` -> [its first instant, the next month's first instant) in UTC."""
    m = re.fullmatch(r"(\d{4})-(\d{2})", month.strip())
    if m is None or not 1 <= int(m.group(2)) <= 12 or int(m.group(1)) < 1:
        raise ConfigError(f"--month {month!r} must be a month as YYYY-MM, e.g. 2025-03.")
    year, mon = int(m.group(1)), int(m.group(2))
    start = datetime(year, mon, 1, tzinfo=timezone.utc)
    if year == 9999 and mon == 12:
        raise ConfigError(f"--month {month!r} is past the last month this service can bill.")
    end = datetime(year + mon // 12, mon % 12 + 1, 1, tzinfo=timezone.utc)
    return start, end


def month_start(now: datetime | None = None) -> datetime:
    """The first instant (UTC) of the month ``now`` is in."""
    t = _utc(now or utcnow())
    return datetime(t.year, t.month, 1, tzinfo=timezone.utc)


def parse_instant(text: str, name: str) -> datetime:
    """An ISO 8601 date (midnight UTC) or date-time (naive: UTC) as an aware UTC datetime."""
    raw = text.strip()
    if raw[-1:] in ("Z", "z"):  # Python 3.10's fromisoformat does not read the Z
        raw = raw[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise ConfigError(
            f"{name}={text[:40]!r} is not an ISO 8601 date or date-time, "
            "e.g. 2025-03-01 or 2025-03-01T12:00:00Z."
        ) from None
    try:
        return _utc(parsed)
    except OverflowError:  # the first or last day of year 1 or 9999, moved to UTC
        raise ConfigError(f"{name}={text[:40]!r} is outside the years 1 to 9999 in UTC.") from None


def _utc(t: datetime) -> datetime:
    aware_t = aware(t)
    assert aware_t is not None
    return aware_t.astimezone(timezone.utc)


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


__all__ = [
    "GB",
    "PRICES_ENV",
    "Line",
    "Prices",
    "SystemUsage",
    "UsageReport",
    "device_watts",
    "load_prices",
    "month_start",
    "month_window",
    "packaged_prices",
    "parse_instant",
    "prices_from_dict",
    "usage",
]
