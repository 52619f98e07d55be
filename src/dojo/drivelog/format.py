"""The drive-log contract in names: topics, frame ids, required telemetry fields, file markers.

See :mod:`dojo.drivelog` for the format; the writer, the reader and the data engine's ingest all
take these names from here.
"""

from __future__ import annotations

from dojo.drivelog.telemetry import REQUIRED

CAMERA_TOPIC = "/camera/{}"
POSE_TOPIC = "/ego/pose"
TELEMETRY_TOPIC = "/telemetry"
EVENTS_TOPIC = "/events"
OCCUPANCY_TOPIC = "/labels/occupancy"
CAMERA_MOUNTS_TOPIC = "/camera_mounts"  # static ego -> camera_<name> transforms, once at t = 0
WORLD_FRAME, EGO_FRAME = "world", "ego"
CAMERA_FRAME = "camera_{}"  # a camera's optical frame: +z forward, +x right, +y down (Foxglove's)
TELEMETRY_FIELDS = REQUIRED  # every telemetry message carries these (dojo.drivelog.telemetry)
PARTIAL_SUFFIX = ".partial"
MCAP_MAGIC = b"\x89MCAP0\r\n"

# schema of each fixed topic (cameras: VIDEO_SCHEMA); a log must have these channels
VIDEO_SCHEMA = "foxglove.CompressedVideo"
SCHEMA_OF_TOPIC = {
    POSE_TOPIC: "foxglove.FrameTransform",
    TELEMETRY_TOPIC: "dojo.Telemetry",
    EVENTS_TOPIC: "dojo.Event",
    OCCUPANCY_TOPIC: "foxglove.Grid",
    CAMERA_MOUNTS_TOPIC: "foxglove.FrameTransform",
}
OPTIONAL_TOPICS = frozenset({CAMERA_MOUNTS_TOPIC})  # logs written before it existed lack it
