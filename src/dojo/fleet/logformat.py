"""The drive-log contract in names: topics, frame ids, required telemetry fields, file markers.

See :mod:`dojo.fleet.drivelog` for the format; the writer, the reader and the data engine's
ingest all take these names from here.
"""

from __future__ import annotations

CAMERA_TOPIC = "/camera/{}"
POSE_TOPIC = "/ego/pose"
TELEMETRY_TOPIC = "/telemetry"
EVENTS_TOPIC = "/events"
OCCUPANCY_TOPIC = "/labels/occupancy"
CAMERA_MOUNTS_TOPIC = "/camera_mounts"  # static ego -> camera_<name> transforms, once at t = 0
WORLD_FRAME, EGO_FRAME = "world", "ego"
CAMERA_FRAME = "camera_{}"  # a camera's optical frame: +z forward, +x right, +y down (Foxglove's)
TELEMETRY_FIELDS = ("speed_mps", "accel_mps2", "steer_rad", "lane", "ttc_s", "command")
PARTIAL_SUFFIX = ".partial"
MCAP_MAGIC = b"\x89MCAP0\r\n"
