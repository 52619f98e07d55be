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
CALIBRATION_TOPIC = "/camera/{}/calibration"  # a camera's intrinsics: at t = 0 and each keyframe
SCENE_TOPIC = "/scene"  # every object around the ego, once per decision step
WORLD_FRAME, EGO_FRAME = "world", "ego"
CAMERA_FRAME = "camera_{}"  # a camera's optical frame: +z forward, +x right, +y down (Foxglove's)
TELEMETRY_FIELDS = REQUIRED  # every telemetry message carries these (dojo.drivelog.telemetry)
PARTIAL_SUFFIX = ".partial"
MCAP_MAGIC = b"\x89MCAP0\r\n"

# schema of each fixed topic (cameras: VIDEO_SCHEMA); a log must have these channels
VIDEO_SCHEMA = "foxglove.CompressedVideo"
CALIBRATION_SCHEMA = "foxglove.CameraCalibration"  # the schema of every CALIBRATION_TOPIC
SCHEMA_OF_TOPIC = {
    POSE_TOPIC: "foxglove.FrameTransform",
    TELEMETRY_TOPIC: "dojo.Telemetry",
    EVENTS_TOPIC: "dojo.Event",
    OCCUPANCY_TOPIC: "foxglove.Grid",
    CAMERA_MOUNTS_TOPIC: "foxglove.FrameTransform",
    SCENE_TOPIC: "foxglove.SceneUpdate",
}
# logs written before these channels existed lack them (and every CALIBRATION_TOPIC)
OPTIONAL_TOPICS = frozenset({CAMERA_MOUNTS_TOPIC, SCENE_TOPIC})


def topic_schemas(cameras: tuple[str, ...] | list[str]) -> tuple[dict[str, str], frozenset[str]]:
    """The schema name of every topic of a log with these cameras, and the topics it may lack."""
    video = {CAMERA_TOPIC.format(c): VIDEO_SCHEMA for c in cameras}
    calibration = {CALIBRATION_TOPIC.format(c): CALIBRATION_SCHEMA for c in cameras}
    return video | SCHEMA_OF_TOPIC | calibration, OPTIONAL_TOPICS | frozenset(calibration)
