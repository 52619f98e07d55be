"""The drive-log format: one MCAP file per car per drive, zstd-chunked and indexed, readable by Foxglove.

Channels (all JSON; schemas in :mod:`dojo.drivelog.schemas`; telemetry fields, one list, in
:mod:`dojo.drivelog.telemetry`):

==============================  ==========================  ==============================================
topic                           schema                      one message per
==============================  ==========================  ==============================================
``/camera/<name>``              foxglove.CompressedVideo    camera frame: one H.264 access unit
``/ego/pose``                   foxglove.FrameTransform     pose: ``world`` -> ``ego``
``/telemetry``                  dojo.Telemetry              decision: speed, accel, steer, lane, TTC, ...
``/events``                     dojo.Event                  event: interventions, disagreements, crashes
``/labels/occupancy``           foxglove.Grid               ground-truth bird's-eye grid
``/camera_mounts``              foxglove.FrameTransform     camera, at t = 0: ``ego`` -> ``camera_<name>``
``/camera/<name>/calibration``  foxglove.CameraCalibration  camera, at t = 0 and its keyframes: K, R, P
``/scene``                      foxglove.SceneUpdate        t = 0 and each decision: all objects, ego too
==============================  ==========================  ==============================================

``/camera_mounts``, the calibrations and ``/scene`` are optional: logs written before them lack
them and stay valid (``format.OPTIONAL_TOPICS``); :func:`read_scene` then reads no moments.

Metadata records: ``drive`` (the caller's config: family, seed, mode, car id, ... plus
``software_version``), ``drive_log`` (how the log was written: cameras, size, fps, codec) and,
written on close, ``summary`` (status, frame and event counts). No attachments.

Video is libx264 through PyAV: 4:2:0, full range, BT.601, no B-frames, one packet per frame
(``tune=zerolatency``), an IDR keyframe with SPS and PPS every ``keyframe_interval_s``, one thread
per encoder so the bytes do not depend on the machine. Grey images become the luma plane with
neutral chroma, so grey pixels survive exactly up to the codec's quantisation.

Times: a message's log time is ``start_time_ns + t_s * 1e9`` [ns]; ``t_s`` is time since the
drive began [s]. Readers give ``t_s`` back.

Crash safety: the file is written under ``<name>.partial`` and renamed on :meth:`close`, so a
finished name always holds a complete, indexed log. ``close()`` is idempotent and runs from
``__exit__``, so a ``KeyboardInterrupt`` (or any error) inside ``with DriveLogWriter(...)``
still leaves a valid log, its summary saying ``interrupted: KeyboardInterrupt``. Ctrl-C is held
back while a record is being written or the file is being closed (main thread only), so it
never lands half-way through one. A killed process leaves only the ``.partial`` file. A full
disk raises :class:`~dojo.errors.StorageFullError` and removes the partial file.

Modules: :mod:`~dojo.drivelog.format` (topics, frames, markers), :mod:`~dojo.drivelog.telemetry`
(the telemetry record), :mod:`~dojo.drivelog.schemas` (JSON schemas), :mod:`~dojo.drivelog.decode`
(the one MCAP decoder, used by the reader and by ingest), :mod:`~dojo.drivelog.scene` (the scene
channel and the calibration message), :mod:`~dojo.drivelog.reader`,
:mod:`~dojo.drivelog.writer` with :mod:`~dojo.drivelog.checks` (what it accepts),
:mod:`~dojo.drivelog.sigint` (Ctrl-C held back) and :mod:`~dojo.drivelog.pose` (quaternions),
:mod:`~dojo.drivelog.video` (H.264). A corrupt log raises :class:`~dojo.errors.CorruptLogError`.
"""

from __future__ import annotations

from dojo.drivelog.decode import open_drive_log
from dojo.drivelog.format import (
    CALIBRATION_TOPIC,
    CAMERA_FRAME,
    CAMERA_MOUNTS_TOPIC,
    CAMERA_TOPIC,
    EGO_FRAME,
    EVENTS_TOPIC,
    MCAP_MAGIC,
    OCCUPANCY_TOPIC,
    PARTIAL_SUFFIX,
    POSE_TOPIC,
    SCENE_TOPIC,
    TELEMETRY_FIELDS,
    TELEMETRY_TOPIC,
    WORLD_FRAME,
)
from dojo.drivelog.pose import camera_intrinsics, camera_mounts, optical_rotation
from dojo.drivelog.reader import (
    ChannelInfo,
    DriveLog,
    VideoPacket,
    decode_video,
    read_drive_log,
    read_occupancy,
    read_scene,
    video_packets,
)
from dojo.drivelog.scene import SceneFrame, SceneLog
from dojo.drivelog.telemetry import Telemetry
from dojo.drivelog.video import (
    DEFAULT_CRF,
    VIDEO_FORMAT,
    X264_PRESETS,
    _H264Encoder,
    decode_access_units,
    is_keyframe,
    nal_unit_types,
)
from dojo.drivelog.writer import DriveLogWriter

__all__ = [
    "CALIBRATION_TOPIC",
    "CAMERA_FRAME",
    "CAMERA_MOUNTS_TOPIC",
    "CAMERA_TOPIC",
    "DEFAULT_CRF",
    "EGO_FRAME",
    "EVENTS_TOPIC",
    "MCAP_MAGIC",
    "OCCUPANCY_TOPIC",
    "PARTIAL_SUFFIX",
    "POSE_TOPIC",
    "SCENE_TOPIC",
    "TELEMETRY_FIELDS",
    "TELEMETRY_TOPIC",
    "VIDEO_FORMAT",
    "WORLD_FRAME",
    "X264_PRESETS",
    "ChannelInfo",
    "DriveLog",
    "DriveLogWriter",
    "SceneFrame",
    "SceneLog",
    "Telemetry",
    "VideoPacket",
    "_H264Encoder",
    "camera_intrinsics",
    "camera_mounts",
    "decode_access_units",
    "decode_video",
    "is_keyframe",
    "nal_unit_types",
    "open_drive_log",
    "optical_rotation",
    "read_drive_log",
    "read_occupancy",
    "read_scene",
    "video_packets",
]
