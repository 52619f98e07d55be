"""Triggers: named SQL questions over the catalog that find the moments worth training on.

A trigger is a name, a SELECT over the catalog views (:mod:`dojo.data.catalog`) that returns one
row per moment, ``(drive_id VARCHAR, t_s DOUBLE)``, and named parameters with defaults that the
SQL reads as DuckDB prepared parameters (``$ttc_s``), never pasted into the text, so a value can
never change what the statement does.

Built-in triggers:

``critical_intervention`` / ``noncritical_intervention``
    the safety driver took over (``events.kind = 'intervention_start'``), to avoid a collision or
    not. A non-critical takeover that turned critical logs a second, critical start, so the same
    takeover can be in both.
``shadow_disagreement``, ``collision``
    the fleet's own events of that kind.
``near_miss``
    the ego's time-to-collision fell under ``ttc_s`` (default 1.5 s, the critical threshold of
    the design). Computed from telemetry rather than read from the fleet's ``near_miss`` events,
    whose threshold was fixed on the car (2.5 s by default) and whose cooldown hides repeats: here
    a user can ask for any threshold. One moment per episode: the first step under it.
``hard_brake``
    the driver in control accelerated below ``accel_mps2`` (default -4 m/s^2), again from
    telemetry, one moment per episode.
``cut_in``
    the ego's leader became another vehicle whose gap is at least ``drop_m`` (default 5 m)
    shorter than the previous leader's gap a step before, while the ego stayed in its lane (no
    leader before counts as one infinitely far away). The world lists a car that signals into
    the ego's lane as its leader at once, so the moment is the start of the cut-in; the ego's own
    lane change is excluded only once its lane index changes, so the first half of one can match.

User triggers come from a TOML file::

    [triggers.slow_in_left_lane]
    description = "crawling in the fast lane"
    sql = "SELECT drive_id, t_s FROM telemetry WHERE lane = 1 AND speed_mps < $v_mps"
    params = { v_mps = 5.0 }
    # override = true    # only to replace a built-in trigger of the same name

A user trigger's SQL is trusted like any query a user runs on their own catalog (it can read
what the process can); it must be one SELECT whose result has ``drive_id`` and ``t_s``.
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from dojo.data.catalog import empty_catalog
from dojo.errors import DojoConfigError

ParamValue = float | int | bool | str
NORMAL = (
    "normal"  # the pseudo-trigger of sampled normal driving in a dataset; no trigger may take it
)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_FILE_KEYS = {"sql", "description", "params", "override"}


@dataclass(frozen=True)
class Trigger:
    """A named moment-finding query; ``params`` holds the defaults of its ``$name`` parameters."""

    name: str
    sql: str
    description: str = ""
    params: Mapping[str, ParamValue] = field(default_factory=dict)
    builtin: bool = True

    def resolve(self, overrides: Mapping[str, Any] | None = None) -> dict[str, ParamValue]:
        """The parameters to run with: the defaults, replaced by ``overrides`` of the same type."""
        out = dict(self.params)
        for key, value in (overrides or {}).items():
            if key not in self.params:
                known = ", ".join(sorted(self.params)) or "none"
                raise DojoConfigError(
                    f"Trigger {self.name!r} has no parameter {key!r} (its parameters: {known})."
                )
            out[key] = _coerce(self.name, key, value, self.params[key])
        return out


def _coerce(trigger: str, key: str, value: Any, default: ParamValue) -> ParamValue:
    """``value`` as the type of ``default``; strings (from a command line) are parsed."""
    where = f"{trigger}.{key}={value!r}"
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise DojoConfigError(f"Parameter {where} must be true or false.")
    if isinstance(default, int | float):
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise DojoConfigError(f"Parameter {where} must be a number.")
        try:
            number = float(value) if isinstance(default, float) else int(value)
        except ValueError as e:
            kind = "a number" if isinstance(default, float) else "an integer"
            raise DojoConfigError(f"Parameter {where} must be {kind}.") from e
        if isinstance(number, float) and not math.isfinite(number):
            raise DojoConfigError(f"Parameter {where} must be a finite number.")
        if isinstance(default, int) and isinstance(value, float) and value != number:
            raise DojoConfigError(f"Parameter {where} must be an integer.")
        return number
    if not isinstance(value, str):
        raise DojoConfigError(f"Parameter {where} must be a string.")
    return value


# ------------------------------------------------------------------------------ built-ins
def _from_events(kind: str, critical: str = "") -> str:
    return f"SELECT drive_id, t_s FROM events WHERE kind = '{kind}'{critical}"


def _rising(condition: str) -> str:
    """Moments where ``condition`` (over telemetry columns) turns true: the first step of each run."""
    return f"""
SELECT drive_id, t_s FROM (
    SELECT drive_id, t_s, coalesce({condition}, false) AS hit,
           lag(coalesce({condition}, false)) OVER (PARTITION BY drive_id ORDER BY t_s) AS before
    FROM telemetry
) WHERE hit AND NOT coalesce(before, false)"""


_CUT_IN = """
SELECT drive_id, t_s FROM (
    SELECT drive_id, t_s, lane, leader, gap_m,
           lag(lane) OVER w AS lane_before,
           lag(leader) OVER w AS leader_before,
           lag(gap_m) OVER w AS gap_before
    FROM telemetry
    WINDOW w AS (PARTITION BY drive_id ORDER BY t_s)
) WHERE leader >= 0 AND leader_before IS NOT NULL AND leader <> leader_before
    AND lane = lane_before
    AND gap_m IS NOT NULL
    AND (leader_before < 0 OR gap_before IS NULL OR gap_m <= gap_before - $drop_m)"""

BUILTIN: dict[str, Trigger] = {
    t.name: t
    for t in (
        Trigger(
            "critical_intervention",
            _from_events("intervention_start", " AND critical"),
            "The safety driver took over to avoid a collision (TTC under the threshold, or a crash).",
        ),
        Trigger(
            "noncritical_intervention",
            _from_events("intervention_start", " AND NOT critical"),
            "The safety driver took over without an imminent collision (comfort, route, lane).",
        ),
        Trigger(
            "shadow_disagreement",
            _from_events("shadow_disagreement"),
            "The shadow network would have done something else than the human, for a while.",
        ),
        Trigger("collision", _from_events("collision"), "The ego collided."),
        Trigger(
            "near_miss",
            _rising("ttc_s < $ttc_s"),
            "The ego's time-to-collision fell under ttc_s [s] (from telemetry, one moment per episode).",
            {"ttc_s": 1.5},
        ),
        Trigger(
            "hard_brake",
            _rising("accel_mps2 < $accel_mps2"),
            "The driver braked harder than accel_mps2 [m/s^2] (from telemetry, one moment per episode).",
            {"accel_mps2": -4.0},
        ),
        Trigger(
            "cut_in",
            _CUT_IN,
            "Another vehicle became the ego's leader at least drop_m [m] closer than the last one, "
            "the ego keeping its lane.",
            {"drop_m": 5.0},
        ),
    )
}


# ---------------------------------------------------------------------- checking the SQL
def _statement(name: str, sql: str) -> tuple[str, set[str]]:
    """The one SELECT in ``sql`` (no trailing ';') and the named parameters it reads."""
    if not isinstance(sql, str) or not sql.strip():
        raise DojoConfigError(f"Trigger {name!r} has sql={sql!r}; give one SELECT statement.")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as e:
        first = str(e).strip().splitlines()[0]
        raise DojoConfigError(f"Trigger {name!r} has SQL that does not parse: {first}") from e
    if len(statements) != 1:
        raise DojoConfigError(
            f"Trigger {name!r} has {len(statements)} SQL statements; give exactly one SELECT."
        )
    st = statements[0]
    if st.type != duckdb.StatementType.SELECT:
        raise DojoConfigError(
            f"Trigger {name!r} has a {st.type.name} statement; a trigger must be a SELECT."
        )
    return st.query.strip().rstrip(";"), set(st.named_parameters)


def _wrapped(query: str) -> str:
    # the newline keeps a trailing '-- comment' in the user's SQL from eating the parenthesis
    return (
        "SELECT DISTINCT CAST(drive_id AS VARCHAR) AS drive_id, CAST(t_s AS DOUBLE) AS t_s "
        f"FROM (\n{query}\n) AS moments WHERE drive_id IS NOT NULL AND t_s IS NOT NULL "
        "ORDER BY drive_id, t_s"
    )


def check(trigger: Trigger, con: duckdb.DuckDBPyConnection | None = None) -> None:
    """Raise DojoConfigError unless ``trigger`` is a valid trigger: name, parameters, one SELECT
    that binds against the catalog (run with LIMIT 0) and returns ``drive_id`` and ``t_s``."""
    name = trigger.name
    if not isinstance(name, str) or not _IDENT.fullmatch(name):
        raise DojoConfigError(f"Trigger name {name!r} must be an identifier (letters, digits, _).")
    if name == NORMAL:
        raise DojoConfigError(f"Trigger name {name!r} is reserved for sampled normal driving.")
    query, used = _statement(name, trigger.sql)
    for key, value in trigger.params.items():
        if not isinstance(key, str) or not _IDENT.fullmatch(key):
            raise DojoConfigError(
                f"Trigger {name!r} has a parameter named {key!r}; use an identifier."
            )
        if not isinstance(value, bool | int | float | str) or (
            isinstance(value, float) and not math.isfinite(value)
        ):
            raise DojoConfigError(
                f"Trigger {name!r} parameter {key}={value!r} must be a finite number, a bool or a string."
            )
    missing = used - set(trigger.params)
    if missing:
        raise DojoConfigError(
            f"Trigger {name!r} reads ${', $'.join(sorted(missing))} but declares no default for it "
            "(add it to params)."
        )
    own = con is None
    con = empty_catalog() if con is None else con
    try:
        args = {k: v for k, v in trigger.params.items() if k in used}
        rel = con.execute(f"SELECT * FROM (\n{query}\n) AS moments LIMIT 0", args)
        columns = [d[0] for d in rel.description or []]
    except duckdb.Error as e:
        first = str(e).strip().splitlines()[0]
        raise DojoConfigError(f"Trigger {name!r} fails on the catalog: {first}") from e
    finally:
        if own:
            con.close()
    lacking = [c for c in ("drive_id", "t_s") if c not in columns]
    if lacking:
        raise DojoConfigError(
            f"Trigger {name!r} returns columns {columns}; it must return drive_id and t_s "
            f"(missing: {', '.join(lacking)})."
        )


# --------------------------------------------------------------------------- user files
def _toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib as toml
    else:  # pragma: no cover - Python 3.10 only
        try:
            import tomli as toml
        except ModuleNotFoundError as e:
            raise DojoConfigError(
                f"Reading the trigger file {str(path)!r} needs Python 3.11 or the tomli package."
            ) from e
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DojoConfigError(f"The trigger file {str(path)!r} cannot be read ({e}).") from e
    try:
        return dict(toml.loads(text))
    except toml.TOMLDecodeError as e:
        raise DojoConfigError(f"The trigger file {str(path)!r} is not valid TOML ({e}).") from e


def load_user_triggers(path: str | os.PathLike[str]) -> dict[str, Trigger]:
    """The triggers of a TOML file (see the module docstring), each checked with :func:`check`."""
    p = Path(path)
    doc = _toml(p)
    extra = set(doc) - {"triggers"}
    if extra or not isinstance(doc.get("triggers"), dict) or not doc["triggers"]:
        raise DojoConfigError(
            f"The trigger file {str(p)!r} must hold [triggers.NAME] tables and nothing else "
            f"(found {sorted(doc) or 'nothing'})."
        )
    out: dict[str, Trigger] = {}
    con = empty_catalog()
    try:
        for name, body in doc["triggers"].items():
            if not isinstance(body, dict):
                raise DojoConfigError(
                    f'[triggers.{name}] in {str(p)!r} must be a table with sql = "...".'
                )
            unknown = set(body) - _FILE_KEYS
            if unknown:
                raise DojoConfigError(
                    f"[triggers.{name}] in {str(p)!r} has unknown keys {sorted(unknown)} "
                    f"(allowed: {', '.join(sorted(_FILE_KEYS))})."
                )
            params = body.get("params", {})
            description = body.get("description", "")
            override = body.get("override", False)
            if not isinstance(params, dict):
                raise DojoConfigError(
                    f"[triggers.{name}] params={params!r} must be a table of defaults."
                )
            if not isinstance(description, str):
                raise DojoConfigError(
                    f"[triggers.{name}] description={description!r} must be a string."
                )
            if not isinstance(override, bool):
                raise DojoConfigError(
                    f"[triggers.{name}] override={override!r} must be true or false."
                )
            if name in BUILTIN and not override:
                raise DojoConfigError(
                    f"Trigger {name!r} in {str(p)!r} clashes with the built-in trigger; "
                    "rename it or set override = true."
                )
            trigger = Trigger(name, body.get("sql", ""), description, dict(params), builtin=False)
            check(trigger, con)
            out[name] = trigger
    finally:
        con.close()
    return out


def registry(user_triggers_file: str | os.PathLike[str] | None = None) -> dict[str, Trigger]:
    """Every trigger by name: the built-ins, then the file's (which may override a built-in)."""
    out = dict(BUILTIN)
    if user_triggers_file is not None:
        out.update(load_user_triggers(user_triggers_file))
    return out


def list_triggers(user_triggers_file: str | os.PathLike[str] | None = None) -> list[Trigger]:
    """Every trigger, sorted by name."""
    return sorted(registry(user_triggers_file).values(), key=lambda t: t.name)


def get_trigger(name: str, triggers: Mapping[str, Trigger] | None = None) -> Trigger:
    """The trigger called ``name``; an unknown name lists the known ones."""
    known = BUILTIN if triggers is None else triggers
    if not isinstance(name, str) or name not in known:
        raise DojoConfigError(
            f"Unknown trigger {name!r}; known triggers: {', '.join(sorted(known))}."
        )
    return known[name]


def run_trigger(
    con: duckdb.DuckDBPyConnection, name: str | Trigger, /, **params: Any
) -> list[tuple[str, float]]:
    """The moments ``(drive_id, t_s)`` the trigger finds on the catalog ``con``, sorted, distinct.

    ``name`` is a built-in trigger's name or a :class:`Trigger` (e.g. from :func:`registry`);
    ``params`` override its defaults.
    """
    trigger = name if isinstance(name, Trigger) else get_trigger(name)
    values = trigger.resolve(params)
    query, used = _statement(trigger.name, trigger.sql)
    try:
        rows = con.execute(
            _wrapped(query), {k: v for k, v in values.items() if k in used}
        ).fetchall()
    except duckdb.Error as e:
        first = str(e).strip().splitlines()[0]
        raise DojoConfigError(f"Trigger {trigger.name!r} failed on the catalog: {first}") from e
    return [(str(d), float(t)) for d, t in rows]


def parse_params(items: list[str] | tuple[str, ...]) -> dict[str, dict[str, str]]:
    """``["near_miss.ttc_s=1.0", ...]`` (as the command line gives them) → ``{trigger: {param: text}}``;
    the values are converted to each parameter's type when the trigger runs."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        m = re.fullmatch(
            r"\s*([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*", item
        )
        if m is None:
            raise DojoConfigError(
                f"Parameter {item!r} must look like TRIGGER.NAME=VALUE (e.g. near_miss.ttc_s=1.0)."
            )
        out.setdefault(m.group(1), {})[m.group(2)] = m.group(3)
    return out


__all__ = [
    "BUILTIN",
    "NORMAL",
    "ParamValue",
    "Trigger",
    "check",
    "empty_catalog",
    "get_trigger",
    "list_triggers",
    "load_user_triggers",
    "parse_params",
    "registry",
    "run_trigger",
]
