"""The telemetry record: its one field list, and what is generated from it.

The attributes of :class:`Telemetry` name every telemetry field once, with its Python, JSON and
Arrow types, unit and description; :data:`FIELDS` is read from them. From that list come the
``dojo.Telemetry`` JSON schema of the ``/telemetry`` channel (:func:`json_schema`), the fields
the writer requires (:data:`REQUIRED`), the clip store's ``telemetry`` table
(:data:`ARROW_SCHEMA`) and the reader's typed records (:meth:`Telemetry.from_message`). A new
field is added here and nowhere else.

Fields marked ``in_schema`` are the ones the first version of the format required and its
JSON schema lists; the others (``gap_m``, ``leader``, ``driver``) came later and travel as the
extra fields the schema allows. The schema's bytes are inside every log, so listing them there
now would change the bytes of every drive log; a reader takes an absent one as its ``default``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any, Final

import pyarrow as pa

from dojo.errors import CorruptLogError
from dojo.world.world import Command

_REQUIRED: Final = object()  # a field's default when a message must carry it
_COMMANDS = {c.name: int(c) for c in Command}
NOT_LOGGED_LANE: Final = -99  # target_lane read from a log written before it was logged


def command_value(value: Any) -> int:
    """A logged route command (its name, or its number in older logs) as its number."""
    if isinstance(value, str):
        if value not in _COMMANDS:
            why = f"telemetry command {value!r} is not one of {', '.join(_COMMANDS)}"
            raise CorruptLogError(f"The drive log is corrupt: {why}.", reason=why)
        return _COMMANDS[value]
    return int(value)


@dataclass(frozen=True)
class Field:
    """One telemetry field: how it is logged (JSON), stored (Arrow) and read back (Python)."""

    name: str
    json_type: str | tuple[str, ...]  # JSON schema "type"
    arrow: pa.DataType
    unit: str  # "" for a count, an index or a name
    description: str  # as the JSON schema says it; names the unit in brackets
    in_schema: bool = True  # listed (and required) in the channel's JSON schema
    default: Any = _REQUIRED  # the value read when a message lacks the field

    def read(self, message: dict[str, Any]) -> Any:
        """The field's value in a decoded message, in its Python type (KeyError if missing)."""
        if self.default is _REQUIRED:
            raw = message[self.name]
            if self.name == "command":
                return command_value(raw)
            return float(raw) if pa.types.is_floating(self.arrow) else int(raw)
        raw = message.get(self.name, self.default)
        if pa.types.is_floating(self.arrow):
            return raw  # a nullable float (TTC, gap) is passed on as logged: null stays null
        return int(raw) if pa.types.is_integer(self.arrow) else str(raw)


def _spec(
    json_type: str | tuple[str, ...],
    arrow: pa.DataType,
    unit: str,
    description: str,
    *,
    in_schema: bool = True,
    default: Any = _REQUIRED,
) -> Any:
    """A :class:`Telemetry` attribute that is a logged field (its spec in the metadata)."""
    spec = {"json_type": json_type, "arrow": arrow, "unit": unit, "description": description}
    spec |= {"in_schema": in_schema, "default": default}
    if default is _REQUIRED:
        return field(metadata={"spec": spec})
    return field(default=default, metadata={"spec": spec})


@dataclass(frozen=True, kw_only=True)
class Telemetry:
    """One telemetry message as read back: drive time ``t_s`` [s], the fields, and the rest.

    The attributes between ``t_s`` and ``extra`` are THE field list: their order, Python types,
    JSON and Arrow types, units and descriptions (:data:`FIELDS` is made from them). ``extra``
    holds any other keys the writer was given.
    """

    t_s: float
    speed_mps: float = _spec("number", pa.float64(), "m/s", "Ego speed [m/s].")
    accel_mps2: float = _spec("number", pa.float64(), "m/s^2", "Ego acceleration command [m/s^2].")
    steer_rad: float = _spec(
        "number", pa.float64(), "rad", "Ego steering angle [rad], left positive."
    )
    lane: int = _spec("integer", pa.int16(), "", "Lane index, 0 the rightmost.")
    ttc_s: float | None = _spec(
        ("number", "null"),
        pa.float64(),
        "s",
        "Time to collision [s]; null when nothing is closing in.",
        default=None,
    )
    gap_m: float | None = _spec(
        ("number", "null"),
        pa.float64(),
        "m",
        "Gap to the leader [m]; null when there is none.",
        in_schema=False,
        default=None,
    )
    leader: int = _spec(
        "integer",
        pa.int32(),
        "",
        "The leader's vehicle slot; -1 when there is none.",
        in_schema=False,
        default=-1,
    )
    command: int = _spec(
        ("string", "integer"),
        pa.int16(),
        "",
        "Route command given to the driver (name, e.g. KEEP_LANE).",
    )
    driver: str = _spec(
        "string",
        pa.string(),
        "",
        "Who drove: human, network or safety_driver.",
        in_schema=False,
        default="",
    )
    # the applied action's driver state: with accel, steer and who drove, what re-simulation
    # needs to replay a drive exactly (dojo.eval.resim); absent in logs written before it
    target_lane: int = _spec(
        "integer",
        pa.int16(),
        "",
        "Lane the ego heads for after this step's action; -99 when not logged.",
        in_schema=False,
        default=NOT_LOGGED_LANE,
    )
    v0_mps: float | None = _spec(
        ("number", "null"),
        pa.float64(),
        "m/s",
        "The ego driver's target speed after this step's action [m/s]; null when not logged.",
        in_schema=False,
        default=None,
    )
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_message(cls, t_s: float, message: dict[str, Any]) -> Telemetry:
        """Decode one message (its JSON, without ``timestamp``); KeyError if a field is missing."""
        values = {f.name: f.read(message) for f in FIELDS}
        extra = {k: v for k, v in message.items() if k not in values and k not in _NOT_EXTRA}
        return cls(t_s=t_s, **values, extra=extra)

    def as_dict(self) -> dict[str, Any]:
        """``t_s`` and the fields, by name (``extra`` left out)."""
        return {"t_s": self.t_s, **{f.name: getattr(self, f.name) for f in FIELDS}}


_NOT_EXTRA = frozenset({"t_s", "timestamp"})
FIELDS: Final[tuple[Field, ...]] = tuple(
    Field(f.name, **f.metadata["spec"]) for f in fields(Telemetry) if "spec" in f.metadata
)
NAMES: Final = tuple(f.name for f in FIELDS)
REQUIRED: Final = tuple(f.name for f in FIELDS if f.in_schema)  # every message carries these


def json_schema(time: dict[str, Any]) -> dict[str, Any]:
    """The ``dojo.Telemetry`` JSON schema; ``time`` is the schema of a timestamp."""
    properties: dict[str, Any] = {"timestamp": time}
    for f in FIELDS:
        if f.in_schema:
            kind = list(f.json_type) if isinstance(f.json_type, tuple) else f.json_type
            properties[f.name] = {"type": kind, "description": f.description}
    return {
        "title": "dojo.Telemetry",
        "description": (
            "Ego state and the driver's controls at one decision. Extra fields are allowed."
        ),
        "type": "object",
        "properties": properties,
        "required": ["timestamp", *REQUIRED],
    }


# the clip store's telemetry table: one row per decision step (10 Hz), logged in every mode
ARROW_SCHEMA: Final = pa.schema(
    [
        ("drive_id", pa.string()),
        ("t_s", pa.float64()),
        *[(f.name, f.arrow) for f in FIELDS],
        ("extra", pa.string()),  # any other fields, JSON
    ]
)


def columns(records: list[Telemetry]) -> dict[str, list[Any]]:
    """Telemetry records as the store's columns, by :data:`ARROW_SCHEMA` name (no drive_id)."""
    out: dict[str, list[Any]] = {"t_s": [r.t_s for r in records]}
    for name in NAMES:
        out[name] = [getattr(r, name) for r in records]
    out["extra"] = [json.dumps(r.extra, sort_keys=True) if r.extra else None for r in records]
    return out


__all__ = [
    "ARROW_SCHEMA",
    "FIELDS",
    "NAMES",
    "REQUIRED",
    "Field",
    "Telemetry",
    "columns",
    "command_value",
    "json_schema",
]
