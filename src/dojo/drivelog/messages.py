"""The JSON message of each drive-log channel, built from values the writer was given.

Each function checks what it is given (one :class:`~dojo.errors.ConfigError` sentence naming the
bad value) and returns the message as the channel's schema (:mod:`dojo.drivelog.schemas`) has
it; the writer adds nothing but the bytes. Field order is the order logged: keep it.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any

import numpy as np

from dojo.drivelog import schemas
from dojo.drivelog.checks import check_uint8, is_inf, json_data, number, stamp, whole
from dojo.drivelog.format import CAMERA_FRAME, EGO_FRAME, TELEMETRY_FIELDS, WORLD_FRAME
from dojo.drivelog.pose import optical_rotation, yaw_rotation
from dojo.errors import ConfigError
from dojo.world.occupancy import OccupancySpec


def pose_message(ns: int, x: float, y: float, z: float, yaw: float) -> dict[str, Any]:
    """The ego's pose at log time ``ns``: position [m] and heading ``yaw`` [rad] about z."""
    px, py, pz = number("x", x), number("y", y), number("z", z)
    qx, qy, qz, qw = yaw_rotation(0.5 * number("yaw", yaw))
    message = {
        "timestamp": stamp(ns),
        "parent_frame_id": WORLD_FRAME,
        "child_frame_id": EGO_FRAME,
        "translation": {"x": px, "y": py, "z": pz},
        "rotation": {"x": qx, "y": qy, "z": qz, "w": qw},
    }
    return message


def mount_message(ns: int, name: str, mount: tuple[float, ...]) -> dict[str, Any]:
    """Camera ``name``'s optical frame in the ego frame; ``mount`` is (x_m, y_m, z_m, yaw_rad)."""
    x, y, z, yaw = mount
    qx, qy, qz, qw = optical_rotation(yaw)
    message = {
        "timestamp": stamp(ns),
        "parent_frame_id": EGO_FRAME,
        "child_frame_id": CAMERA_FRAME.format(name),
        "translation": {"x": x, "y": y, "z": z},
        "rotation": {"x": qx, "y": qy, "z": qz, "w": qw},
    }
    return message


def telemetry_message(telemetry: Mapping[str, Any]) -> dict[str, Any]:
    """Checked telemetry: extra keys first, as given, then the required fields in order."""
    if not isinstance(telemetry, Mapping):
        raise ConfigError(f"telemetry={telemetry!r} must be a dict.")
    missing = [k for k in TELEMETRY_FIELDS if k not in telemetry]
    if missing:
        raise ConfigError(f"telemetry misses {', '.join(missing)}.")
    message = extras("telemetry", telemetry, TELEMETRY_FIELDS)
    for key in ("speed_mps", "accel_mps2", "steer_rad"):
        message[key] = number(f"telemetry {key}", telemetry[key])
    message["lane"] = whole("telemetry lane", telemetry["lane"])
    ttc = telemetry["ttc_s"]
    if ttc is not None:
        ttc = math.inf if is_inf(ttc) else number("telemetry ttc_s", ttc)
        if ttc < 0:
            raise ConfigError(f"telemetry ttc_s={telemetry['ttc_s']!r} must be >= 0 s.")
    message["ttc_s"] = None if ttc is None or ttc == math.inf else ttc
    command = telemetry["command"]
    if not isinstance(command, (str, int, np.integer, Enum)) or isinstance(command, bool):
        raise ConfigError(f"telemetry command={command!r} must be a name, a number or an enum.")
    message["command"] = json_data("telemetry command", command)
    return message


def event_message(event: Mapping[str, Any]) -> dict[str, Any]:
    """A checked event: extra keys first, then ``kind``, ``critical`` and ``reason``."""
    if not isinstance(event, Mapping):
        raise ConfigError(f"event={event!r} must be a dict.")
    kind = event.get("kind")
    if kind not in schemas.EVENT_KINDS:
        raise ConfigError(f"event kind={kind!r} must be one of {', '.join(schemas.EVENT_KINDS)}.")
    critical = event.get("critical", False)
    if not isinstance(critical, (bool, np.bool_)):
        raise ConfigError(f"event critical={critical!r} must be True or False.")
    reason = event.get("reason", "")
    if not isinstance(reason, str):
        raise ConfigError(f"event reason={reason!r} must be a string.")
    message = extras("event", event, ("kind", "critical", "reason"))
    message.update(kind=kind, critical=bool(critical), reason=reason)
    return message


def grid_message(ns: int, grid: np.ndarray, spec: OccupancySpec | None) -> dict[str, Any]:
    """An occupancy grid as a foxglove.Grid in the ego frame (the default spec if None)."""
    spec = spec if spec is not None else OccupancySpec()
    shape = (spec.rows, spec.cols)
    check_uint8("grid", grid, shape, "rows, cols of the spec")
    # grid x runs along the columns (ego -y), grid y along the rows (ego -x): a half turn
    # about the axis (1, -1, 0)/sqrt(2), with the corner of cell (0, 0) at the front left
    s = math.sqrt(0.5)
    message = {
        "timestamp": stamp(ns),
        "frame_id": EGO_FRAME,
        "pose": {
            "position": {"x": spec.forward_m, "y": spec.side_m, "z": 0.0},
            "orientation": {"x": s, "y": -s, "z": 0.0, "w": 0.0},
        },
        "column_count": spec.cols,
        "cell_size": {"x": spec.cell_m, "y": spec.cell_m},
        "row_stride": spec.cols,
        "cell_stride": 1,
        "fields": [{"name": "class", "offset": 0, "type": schemas.NUMERIC_TYPE_UINT8}],
        "data": base64.b64encode(np.ascontiguousarray(grid).tobytes()).decode(),
    }
    return message


def extras(what: str, values: Mapping[str, Any], known: Sequence[str]) -> dict[str, Any]:
    """The keys of ``values`` not in ``known``, as JSON data, in the order given."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key in known:
            continue
        if not isinstance(key, str) or key == "timestamp":
            raise ConfigError(f"{what} key {key!r} is reserved or not a string.")
        out[key] = json_data(f"{what} {key}", value)
    return out


__all__ = [
    "event_message",
    "extras",
    "grid_message",
    "mount_message",
    "pose_message",
    "telemetry_message",
]
