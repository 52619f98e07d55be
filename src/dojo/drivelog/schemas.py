"""JSON Schemas of the drive-log channels.

Where Foxglove has a well-known schema it is used under its exact name (``foxglove.CompressedVideo``,
``foxglove.FrameTransform``, ``foxglove.Grid``, ``foxglove.SceneUpdate``,
``foxglove.CameraCalibration``) so that a log opens in Foxglove as is; the schemas
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
    CALIBRATION_SCHEMA,
    CALIBRATION_TOPIC,
    CAMERA_MOUNTS_TOPIC,
    CAMERA_TOPIC,
    EVENTS_TOPIC,
    OCCUPANCY_TOPIC,
    POSE_TOPIC,
    SCENE_TOPIC,
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

_POSE: dict[str, Any] = {
    "type": "object",
    "title": "foxglove.Pose",
    "properties": {"position": _VECTOR3, "orientation": _QUATERNION},
    "required": ["position", "orientation"],
}

_DURATION: dict[str, Any] = {
    "type": "object",
    "title": "duration",
    "properties": {
        "sec": {"type": "integer"},
        "nsec": {"type": "integer", "minimum": 0, "maximum": 999_999_999},
    },
    "required": ["sec", "nsec"],
}


def _list_of(title: str) -> dict[str, Any]:
    """A primitive list the scene leaves empty (arrows, spheres, ...): any items allowed."""
    return {"type": "array", "items": {"type": "object", "title": title}}


SCENE_UPDATE: dict[str, Any] = {
    "title": "foxglove.SceneUpdate",
    "description": "Every object around the ego at one moment: delete all, then one cube each.",
    "type": "object",
    "properties": {
        "deletions": {
            "type": "array",
            "items": {
                "type": "object",
                "title": "foxglove.SceneEntityDeletion",
                "properties": {
                    "timestamp": _TIME,
                    "type": {
                        "title": "foxglove.SceneEntityDeletionType",
                        "description": "0 = MATCHING_ID, 1 = ALL.",
                        "type": "integer",
                        "enum": [0, 1],
                    },
                    "id": {"type": "string"},
                },
                "required": ["timestamp", "type", "id"],
            },
        },
        "entities": {
            "type": "array",
            "items": {
                "type": "object",
                "title": "foxglove.SceneEntity",
                "properties": {
                    "timestamp": _TIME,
                    "frame_id": {"type": "string"},
                    "id": {"type": "string", "description": "The object id, as text."},
                    "lifetime": _DURATION,
                    "frame_locked": {"type": "boolean"},
                    "metadata": {
                        "type": "array",
                        "description": "kind, speed_mps, lane, s_m, d_m (values as text).",
                        "items": {
                            "type": "object",
                            "title": "foxglove.KeyValuePair",
                            "properties": {"key": {"type": "string"}, "value": {"type": "string"}},
                            "required": ["key", "value"],
                        },
                    },
                    "arrows": _list_of("foxglove.ArrowPrimitive"),
                    "cubes": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "title": "foxglove.CubePrimitive",
                            "properties": {
                                "pose": _POSE,
                                "size": _VECTOR3,
                                "color": {
                                    "type": "object",
                                    "title": "foxglove.Color",
                                    "properties": {c: _number(f"{c} in [0, 1]") for c in "rgba"},
                                    "required": list("rgba"),
                                },
                            },
                            "required": ["pose", "size", "color"],
                        },
                    },
                    "spheres": _list_of("foxglove.SpherePrimitive"),
                    "cylinders": _list_of("foxglove.CylinderPrimitive"),
                    "lines": _list_of("foxglove.LinePrimitive"),
                    "triangles": _list_of("foxglove.TriangleListPrimitive"),
                    "texts": _list_of("foxglove.TextPrimitive"),
                    "models": _list_of("foxglove.ModelPrimitive"),
                },
                "required": [
                    "timestamp",
                    "frame_id",
                    "id",
                    "lifetime",
                    "frame_locked",
                    "metadata",
                    "arrows",
                    "cubes",
                    "spheres",
                    "cylinders",
                    "lines",
                    "triangles",
                    "texts",
                    "models",
                ],
            },
        },
    },
    "required": ["deletions", "entities"],
}


def _numbers(count: int, description: str) -> dict[str, Any]:
    return {
        "type": "array",
        "items": {"type": "number"},
        "minItems": count,
        "maxItems": count,
        "description": description,
    }


CAMERA_CALIBRATION: dict[str, Any] = {
    "title": "foxglove.CameraCalibration",
    "description": "A camera's pinhole intrinsics (no distortion); pixel centres at whole numbers.",
    "type": "object",
    "properties": {
        "timestamp": _TIME,
        "frame_id": {"type": "string", "description": "The camera's optical frame."},
        "width": {"type": "integer", "minimum": 0, "description": "[px]"},
        "height": {"type": "integer", "minimum": 0, "description": "[px]"},
        "distortion_model": {"type": "string"},
        "D": {"type": "array", "items": {"type": "number"}},
        "K": _numbers(9, "Intrinsic matrix, row-major: fx 0 cx / 0 fy cy / 0 0 1 [px]."),
        "R": _numbers(9, "Rectification rotation, row-major (identity)."),
        "P": _numbers(12, "Projection matrix, row-major 3x4 [px]."),
    },
    "required": [
        "timestamp",
        "frame_id",
        "width",
        "height",
        "distortion_model",
        "D",
        "K",
        "R",
        "P",
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
        (SCENE_TOPIC, "foxglove.SceneUpdate", SCENE_UPDATE, {}),
    ):
        sid = w.register_schema(name, enc, schema_bytes(schema))
        channels[topic] = w.register_channel(topic, msg, sid, meta)
        if topic == POSE_TOPIC:  # the camera mounts share the FrameTransform schema
            channels[CAMERA_MOUNTS_TOPIC] = w.register_channel(CAMERA_MOUNTS_TOPIC, msg, sid, {})
    # channels added later come last, so the older channels keep their ids
    calibration = w.register_schema(CALIBRATION_SCHEMA, enc, schema_bytes(CAMERA_CALIBRATION))
    for name in cameras:
        topic = CALIBRATION_TOPIC.format(name)
        channels[topic] = w.register_channel(topic, msg, calibration, {})
    return channels
