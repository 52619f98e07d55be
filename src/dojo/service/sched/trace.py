"""Job traces for ``dojo sched simulate``: a small file format and a synthetic generator.

One job a line, JSON lines (``.jsonl``) or CSV with a header (``.csv``)::

    {"submit_s": 0, "tenant": "acme", "chips": 20, "duration_s": 3600, "priority": 0}
    {"submit_s": 12.5, "tenant": "rail", "tiles": 4, "duration_s": 900}

    submit_s,tenant,chips,duration_s,priority,estimate_s
    0,acme,20,3600,0,
    12.5,rail,100,900,10,1200

Fields: ``submit_s`` (seconds from the start of the trace, >= 0), ``tenant`` (text),
``chips`` (D1 chips) or ``tiles`` (25 chips each; exactly one of the two), ``duration_s``
(run time on its chips [s], > 0), optional ``priority`` (integer, default 0, higher first),
``estimate_s`` (the run time the user announced, for backfill; default ``duration_s``) and
``id`` (default ``j<line>``). Anything else is an error naming the line.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dojo.errors import DojoConfigError
from dojo.service.constants import CHIPS_PER_TILE

FIELDS = ("id", "submit_s", "tenant", "chips", "tiles", "duration_s", "priority", "estimate_s")


@dataclass(frozen=True)
class TraceJob:
    id: str
    submit_s: float
    tenant: str
    chips: int
    duration_s: float
    priority: int = 0
    estimate_s: float | None = None  # None: the duration (exact estimates)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def _number(where: str, name: str, raw: Any, *, integer: bool = False) -> float:
    """A trace field as a number: text from a CSV cell or a JSON value (dojo.validate takes only
    numbers, and its messages do not name the line)."""
    if isinstance(raw, bool):
        raise DojoConfigError(f"{where}: {name}={raw!r} is not a number.")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise DojoConfigError(f"{where}: {name}={raw!r} is not a number.") from None
    if not math.isfinite(value):
        raise DojoConfigError(f"{where}: {name}={raw!r} must be finite.")
    if integer and value != int(value):
        raise DojoConfigError(f"{where}: {name}={raw!r} must be a whole number.")
    return value


def parse_job(row: dict[str, Any], where: str, default_id: str) -> TraceJob:
    """One trace row, checked; ``where`` names it in errors (``trace.jsonl line 3``)."""
    unknown = sorted(set(row) - set(FIELDS))
    if unknown:
        raise DojoConfigError(
            f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(FIELDS)}."
        )
    row = {k: v for k, v in row.items() if v not in (None, "")}
    for need in ("submit_s", "tenant", "duration_s"):
        if need not in row:
            raise DojoConfigError(f"{where}: {need} is missing.")
    if ("chips" in row) == ("tiles" in row):
        raise DojoConfigError(f"{where}: give exactly one of chips or tiles.")
    submit = _number(where, "submit_s", row["submit_s"])
    duration = _number(where, "duration_s", row["duration_s"])
    if submit < 0:
        raise DojoConfigError(f"{where}: submit_s={submit:g} must be >= 0.")
    if duration <= 0:
        raise DojoConfigError(f"{where}: duration_s={duration:g} must be > 0.")
    unit = "chips" if "chips" in row else "tiles"
    count = int(_number(where, unit, row[unit], integer=True))
    if count < 1:
        raise DojoConfigError(f"{where}: {unit}={count} must be >= 1.")
    chips = count * (CHIPS_PER_TILE if unit == "tiles" else 1)
    priority = int(_number(where, "priority", row.get("priority", 0), integer=True))
    estimate = None
    if "estimate_s" in row:
        estimate = _number(where, "estimate_s", row["estimate_s"])
        if estimate <= 0:
            raise DojoConfigError(f"{where}: estimate_s={estimate:g} must be > 0.")
    tenant = str(row["tenant"]).strip()
    if not tenant:
        raise DojoConfigError(f"{where}: tenant is empty.")
    return TraceJob(
        id=str(row.get("id", default_id)),
        submit_s=submit,
        tenant=tenant,
        chips=chips,
        duration_s=duration,
        priority=priority,
        estimate_s=estimate,
    )


def load_trace(path: str | Path) -> list[TraceJob]:
    """A trace file (``.jsonl``/``.json`` lines or ``.csv``), sorted by submit time."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise DojoConfigError(f"--trace {path}: cannot read it ({e.strerror}).") from None
    jobs: list[TraceJob] = []
    if p.suffix.lower() == ".csv":
        for i, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
            jobs.append(parse_job(dict(row), f"{p.name} line {i}", f"j{i - 1}"))
    else:
        for i, line in enumerate(text.splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DojoConfigError(f"{p.name} line {i}: not JSON ({e.msg}).") from None
            if not isinstance(row, dict):
                raise DojoConfigError(f"{p.name} line {i}: must be a JSON object.")
            jobs.append(parse_job(row, f"{p.name} line {i}", f"j{i}"))
    if not jobs:
        raise DojoConfigError(f"--trace {path} holds no jobs.")
    ids = [j.id for j in jobs]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DojoConfigError(f"--trace {path}: job id {dup!r} appears more than once.")
    return sorted(jobs, key=lambda j: (j.submit_s, j.id))


def write_trace(jobs: list[TraceJob], path: str | Path) -> None:
    p = Path(path)
    if p.suffix.lower() == ".csv":
        cols = ["id", "submit_s", "tenant", "chips", "duration_s", "priority", "estimate_s"]
        with p.open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, cols)
            w.writeheader()
            for j in jobs:
                w.writerow(j.as_dict())
        return
    p.write_text("".join(json.dumps(j.as_dict()) + "\n" for j in jobs), encoding="utf-8")


@dataclass(frozen=True)
class SyntheticSpec:
    """The synthetic trace: ``jobs`` jobs, sizes log-uniform from 1 chip to ``max_chips``
    (whole tiles above one tile), lognormal run times (median ``median_s``, log-sd ``sigma``:
    heavy tailed), Poisson arrivals at offered ``load`` (chip-seconds asked per chip-second of
    the machine), tenants with weights ``tenants``, a share ``urgent`` of jobs at priority 10."""

    jobs: int = 1000
    seed: int = 0
    total_chips: int = 3000
    max_chips: int = 3000
    median_s: float = 1800.0
    sigma: float = 1.5
    max_s: float = 7 * 86400.0
    load: float = 0.9
    urgent: float = 0.1
    tenants: tuple[tuple[str, float], ...] = (
        ("acme", 0.4),
        ("rail", 0.3),
        ("aero", 0.2),
        ("bots", 0.1),
    )


def synthetic(spec: SyntheticSpec | None = None) -> list[TraceJob]:
    s = spec or SyntheticSpec()
    if s.jobs < 1:
        raise DojoConfigError(f"--jobs {s.jobs} must be at least 1.")
    if not 0 < s.load <= 10:
        raise DojoConfigError(f"--load {s.load} must be in (0, 10].")
    if not 1 <= s.max_chips <= s.total_chips:
        raise DojoConfigError(f"max_chips={s.max_chips} must be in 1..{s.total_chips}.")
    rng = np.random.default_rng(s.seed)
    raw = np.exp(rng.uniform(0.0, math.log(s.max_chips), s.jobs))
    chips = np.where(
        raw <= CHIPS_PER_TILE,
        np.maximum(1, np.round(raw)),
        np.round(raw / CHIPS_PER_TILE) * CHIPS_PER_TILE,
    )
    chips = np.clip(chips, 1, s.max_chips).astype(np.int64)
    dur = np.minimum(np.exp(rng.normal(math.log(s.median_s), s.sigma, s.jobs)), s.max_s)
    dur = np.maximum(dur, 1.0)
    rate = s.load * s.total_chips / float(np.mean(chips * dur))  # arrivals per second
    submit = np.cumsum(rng.exponential(1.0 / rate, s.jobs))
    submit -= submit[0]
    names = [t for t, _ in s.tenants]
    weights = np.asarray([w for _, w in s.tenants], dtype=float)
    tenant = rng.choice(len(names), size=s.jobs, p=weights / weights.sum())
    urgent = rng.random(s.jobs) < s.urgent
    return [
        TraceJob(
            id=f"j{i}",
            submit_s=round(float(submit[i]), 3),
            tenant=names[int(tenant[i])],
            chips=int(chips[i]),
            duration_s=round(float(dur[i]), 3),
            priority=10 if urgent[i] else 0,
        )
        for i in range(s.jobs)
    ]


__all__ = [
    "FIELDS",
    "SyntheticSpec",
    "TraceJob",
    "load_trace",
    "parse_job",
    "synthetic",
    "write_trace",
]
