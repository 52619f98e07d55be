"""JSON Schemas of the drive-log channels.

Where Foxglove has a well-known schema it is used under its exact name (``foxglove.CompressedVideo``,
``foxglove.FrameTransform``, ``foxglove.Grid``) so that a log opens in Foxglove as is; the schemas
below are written for this project from Foxglove's published field tables (JSON encoding: times
are ``{sec, nsec}``, bytes are base64 strings with ``"contentEncoding": "base64"``, enums are
integers). Telemetry and events have no Foxglove equivalent and use ``dojo.*`` schemas.

Every channel uses schema encoding ``jsonschema`` and message encoding ``json``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from mcap.writer import Writer

from dojo.drivelog import telemetry
from dojo.drivelog.format import (
    CAMERA_MOUNTS_TOPIC,
    CAMERA_TOPIC,
    EVENTS_TOPIC,
    OCCUPANCY_TOPIC,
    POSE_TOPIC,
    TELEMETRY_TOPIC,
)
from dojo.world.occupancy import CLASS_NAMES

SCHEMA_ENCODING = "jsonschema"
MESSAGE_ENCODING = "json"

# Event kinds a drive log may carry; a typo in a kind would silently hide a trigger from mining,
# so writers accept only these (add new kinds here).
EVENT_KINDS = (
    "intervention_start",
    "intervention_end",
    "shadow_disagreement",
    "collision",
    "near_miss",
    "hard_brake",
)

NUMERIC_TYPE_UINT8 = 1  # foxglove.PackedElementField.type: UINT8


def _number(description: str) -> dict[str, Any]:
    return {"type": "number", "description": description}


_TIME: dict[str, Any] = {
    "type": "object",
    "title": "time",
    "description": "Log time: seconds and nanoseconds since the drive log's epoch.",
    "properties": {
        "sec": {"type": "integer", "minimum": 0},
        "nsec": {"type": "integer", "minimum": 0, "maximum": 999_999_999},
    },
    "required": ["sec", "nsec"],
}

_VECTOR3: dict[str, Any] = {
    "type": "object",
    "title": "foxglove.Vector3",
    "properties": {axis: _number(f"{axis} [m]") for axis in "xyz"},
    "required": ["x", "y", "z"],
}

_QUATERNION: dict[str, Any] = {
    "type": "object",
    "title": "foxglove.Quaternion",
    "properties": {axis: _number(f"{axis} component") for axis in "xyzw"},
    "required": ["x", "y", "z", "w"],
}

_BYTES: dict[str, Any] = {"type": "string", "contentEncoding": "base64"}

COMPRESSED_VIDEO: dict[str, Any] = {
    "title": "foxglove.CompressedVideo",
    "description": "One frame of a compressed video stream: one H.264 access unit (Annex B).",
    "type": "object",
    "properties": {
        "timestamp": _TIME,
        "frame_id": {"type": "string", "description": "Frame of reference of the camera."},
        "data": {
            **_BYTES,
            "description": "Annex B NAL units of exactly one frame; keyframes carry SPS and PPS.",
        },
        "format": {"type": "string", "description": "Video format: h264."},
    },
    "required": ["timestamp", "frame_id", "data", "format"],
}

FRAME_TRANSFORM: dict[str, Any] = {
    "title": "foxglove.FrameTransform",
    "description": "Pose of the child frame (the ego) in the parent frame (the world).",
    "type": "object",
    "properties": {
        "timestamp": _TIME,
        "parent_frame_id": {"type": "string"},
        "child_frame_id": {"type": "string"},
        "translation": _VECTOR3,
        "rotation": _QUATERNION,
    },
    "required": ["timestamp", "parent_frame_id", "child_frame_id", "translation", "rotation"],
}

GRID: dict[str, Any] = {
    "title": "foxglove.Grid",
    "description": "Ground-truth bird's-eye occupancy grid around the ego, one uint8 class a cell.",
    "type": "object",
    "properties": {
        "timestamp": _TIME,
        "frame_id": {"type": "string"},
        "pose": {
            "type": "object",
            "title": "foxglove.Pose",
            "description": "Corner of cell (row 0, column 0) in the frame; grid in its x-y plane.",
            "properties": {"position": _VECTOR3, "orientation": _QUATERNION},
            "required": ["position", "orientation"],
        },
        "column_count": {"type": "integer", "minimum": 0},
        "cell_size": {
            "type": "object",
            "title": "foxglove.Vector2",
            "properties": {"x": _number("[m]"), "y": _number("[m]")},
            "required": ["x", "y"],
        },
        "row_stride": {"type": "integer", "minimum": 0, "description": "Bytes between rows."},
        "cell_stride": {"type": "integer", "minimum": 0, "description": "Bytes between cells."},
        "fields": {
            "type": "array",
            "items": {
                "type": "object",
                "title": "foxglove.PackedElementField",
                "properties": {
                    "name": {"type": "string"},
                    "offset": {"type": "integer", "minimum": 0},
                    "type": {
                        "title": "foxglove.NumericType",
                        "description": "1 = UINT8.",
                        "type": "integer",
                    },
                },
                "required": ["name", "offset", "type"],
            },
        },
        "data": {**_BYTES, "description": "Cells in row-major order."},
    },
    "required": [
        "timestamp",
        "frame_id",
        "pose",
        "column_count",
        "cell_size",
        "row_stride",
        "cell_stride",
        "fields",
        "data",
    ],
}

TELEMETRY: dict[str, Any] = telemetry.json_schema(_TIME)  # from the one field list

EVENT: dict[str, Any] = {
    "title": "dojo.Event",
    "description": "Something worth mining happened. Extra fields are allowed.",
    "type": "object",
    "properties": {
        "timestamp": _TIME,
        "kind": {"type": "string", "enum": list(EVENT_KINDS)},
        "critical": {
            "type": "boolean",
            "description": "A takeover to avoid a collision, or a collision itself.",
        },
        "reason": {"type": "string", "description": "Why, in words (e.g. ttc_under_threshold)."},
    },
    "required": ["timestamp", "kind", "critical", "reason"],
}


def schema_bytes(schema: dict[str, Any]) -> bytes:
    """The schema as UTF-8 JSON, the bytes an MCAP schema record holds."""
    return json.dumps(schema, separators=(",", ":"), sort_keys=True).encode()


def register_channels(
    w: Writer, cameras: Sequence[str], width: int, height: int, rgb: bool
) -> dict[str, int]:
    """Register every channel of a drive log with an MCAP writer; channel id by topic."""
    enc, msg = SCHEMA_ENCODING, MESSAGE_ENCODING
    video = w.register_schema("foxglove.CompressedVideo", enc, schema_bytes(COMPRESSED_VIDEO))
    size = {"width": str(width), "height": str(height)}
    size["pixel_format"] = "rgb24" if rgb else "gray"
    channels = {
        CAMERA_TOPIC.format(name): w.register_channel(CAMERA_TOPIC.format(name), msg, video, size)
        for name in cameras
    }
    for topic, name, schema, meta in (
        (POSE_TOPIC, "foxglove.FrameTransform", FRAME_TRANSFORM, {}),
        (TELEMETRY_TOPIC, "dojo.Telemetry", TELEMETRY, {}),
        (EVENTS_TOPIC, "dojo.Event", EVENT, {}),
        (
            OCCUPANCY_TOPIC,
            "foxglove.Grid",
            GRID,
            {
                "classes": json.dumps(list(CLASS_NAMES)),
                "layout": "dojo.world.occupancy: row 0 farthest ahead, column 0 farthest left",
            },
        ),
    ):
        sid = w.register_schema(name, enc, schema_bytes(schema))
        channels[topic] = w.register_channel(topic, msg, sid, meta)
        if topic == POSE_TOPIC:  # the camera mounts share the FrameTransform schema
            channels[CAMERA_MOUNTS_TOPIC] = w.register_channel(CAMERA_MOUNTS_TOPIC, msg, sid, {})
    return channels
