"""Reading drive logs with the official ``mcap`` reader: metadata, telemetry, events, video, scene.

Every message is decoded by :mod:`dojo.drivelog.decode`, the decoder ingest uses too.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np

from dojo.drivelog.decode import Grid, Mount, Pose, corrupt, messages, open_drive_log, t_s
from dojo.drivelog.format import (
    CALIBRATION_TOPIC,
    CAMERA_MOUNTS_TOPIC,
    CAMERA_TOPIC,
    EVENTS_TOPIC,
    OCCUPANCY_TOPIC,
    POSE_TOPIC,
    SCENE_TOPIC,
    TELEMETRY_TOPIC,
)
from dojo.drivelog.scene import SceneFrame, SceneLog
from dojo.drivelog.telemetry import Telemetry
from dojo.drivelog.video import decode_access_units, is_keyframe
from dojo.errors import ConfigError


@dataclass(frozen=True)
class ChannelInfo:
    """One channel of a drive log."""

    topic: str
    schema_name: str
    message_encoding: str
    message_count: int


@dataclass(frozen=True)
class VideoPacket:
    """One camera message: drive time [s], Annex B access unit, and whether it is a keyframe."""

    t_s: float
    data: bytes
    keyframe: bool


@dataclass(frozen=True)
class DriveLog:
    """What :func:`read_drive_log` found. Times ``t_s`` are since the drive began [s]."""

    path: Path
    channels: dict[str, ChannelInfo]  # by topic
    config: dict[str, str]  # the 'drive' metadata record: the caller's config, strings or JSON
    summary: dict[str, str]  # the 'summary' metadata record written on close
    cameras: tuple[str, ...]
    width: int  # [px]
    height: int  # [px]
    rgb: bool
    fps: float  # [Hz]
    keyframe_interval: int  # [frames]
    chunk_compressions: frozenset[str]  # e.g. {'zstd'}
    telemetry: list[dict[str, Any]]  # decoded messages, each with 't_s' instead of 'timestamp'
    events: list[dict[str, Any]]
    poses: np.ndarray  # (N, 5): t_s [s], x, y, z [m], yaw [rad]
    # camera name -> (x, y, z [m], qx, qy, qz, qw) of its optical frame in the ego frame
    camera_mounts: dict[str, tuple[float, ...]] = field(default_factory=dict)
    # camera name -> its first foxglove.CameraCalibration (t = 0) as a record: t_s, frame_id,
    # width, height, distortion_model, D, K, R, P; empty for logs written before it existed
    camera_calibrations: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def has_scene(self) -> bool:
        """Whether the log carries ``/scene`` messages (:func:`read_scene` reads them)."""
        info = self.channels.get(SCENE_TOPIC)
        return info is not None and info.message_count > 0

    def telemetry_records(self) -> list[Telemetry]:
        """The telemetry as typed records (fields as :mod:`dojo.drivelog.telemetry` lists)."""
        return [Telemetry.from_message(r["t_s"], r) for r in self.telemetry]

    @property
    def message_counts(self) -> dict[str, int]:
        return {topic: ch.message_count for topic, ch in self.channels.items()}

    @property
    def status(self) -> str:
        """'complete', or 'interrupted: <exception>' when the drive ended by an exception."""
        return self.summary.get("status", "unknown")


def read_drive_log(path: str | os.PathLike[str]) -> DriveLog:
    """Open a finished drive log: channels, message counts, metadata, telemetry, events, poses.

    Raises :class:`~dojo.errors.CorruptLogError` for a truncated or corrupt file, a
    ConfigError for a missing one. Video stays
    compressed: see :func:`decode_video` and :func:`video_packets`.
    """
    with open_drive_log(path) as (p, reader, metadata):
        summary = reader.get_summary()
        settings = metadata["drive_log"]
        start_ns = int(settings["start_time_ns"])
        counts = summary.statistics.channel_message_counts if summary.statistics else {}
        channels = {}
        for cid, ch in summary.channels.items():
            schema = summary.schemas.get(ch.schema_id)
            channels[ch.topic] = ChannelInfo(
                ch.topic, schema.name if schema else "", ch.message_encoding, counts.get(cid, 0)
            )
        telemetry: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        poses: list[tuple[float, ...]] = []
        mounts: dict[str, tuple[float, ...]] = {}
        calibrations: dict[str, dict[str, Any]] = {}
        cameras = tuple(json.loads(settings["cameras"]))
        camera_of = {CALIBRATION_TOPIC.format(c): c for c in cameras}
        topics = [TELEMETRY_TOPIC, EVENTS_TOPIC, POSE_TOPIC, CAMERA_MOUNTS_TOPIC]
        topics += [t for t in camera_of if t in channels]
        for topic, _, item in messages(reader, start_ns, topics):
            if isinstance(item, Mount):
                mounts[item.camera] = item.pose
            elif isinstance(item, Pose):
                poses.append(tuple(item))
            elif topic in camera_of:
                assert isinstance(item, dict)
                calibrations.setdefault(camera_of[topic], item)
            elif isinstance(item, dict):
                (telemetry if topic == TELEMETRY_TOPIC else events).append(item)
        return DriveLog(
            path=p,
            channels=channels,
            config=metadata.get("drive", {}),
            summary=metadata.get("summary", {}),
            cameras=cameras,
            width=int(settings["width"]),
            height=int(settings["height"]),
            rgb=bool(json.loads(settings["rgb"])),
            fps=float(settings["fps"]),
            keyframe_interval=int(settings["keyframe_interval_frames"]),
            chunk_compressions=frozenset(c.compression for c in summary.chunk_indexes),
            telemetry=telemetry,
            events=events,
            poses=np.array(poses, dtype=np.float64).reshape(-1, 5),
            camera_mounts=mounts,
            camera_calibrations=calibrations,
        )


def _video(path: str | os.PathLike[str], camera: str) -> tuple[list[VideoPacket], dict[str, str]]:
    with open_drive_log(path) as (p, reader, metadata):
        settings = metadata["drive_log"]
        cameras = json.loads(settings["cameras"])
        if camera not in cameras:
            raise ConfigError(f"camera={camera!r} is not in {p}; it has {', '.join(cameras)}.")
        start_ns = int(settings["start_time_ns"])
        out = []
        for _, ns, unit in messages(reader, start_ns, [CAMERA_TOPIC.format(camera)]):
            assert isinstance(unit, bytes)
            out.append(VideoPacket(t_s(ns, start_ns), unit, is_keyframe(unit)))
        return out, settings


def video_packets(path: str | os.PathLike[str], camera: str) -> list[VideoPacket]:
    """The compressed frames of one camera, in time order (to remux without re-encoding)."""
    return _video(path, camera)[0]


def decode_video(path: str | os.PathLike[str], camera: str) -> np.ndarray:
    """Decode one camera's frames: uint8 (T, H, W) grey or (T, H, W, 3) RGB, as logged."""
    packets, settings = _video(path, camera)
    rgb = bool(json.loads(settings["rgb"]))
    try:
        frames = decode_access_units((pk.data for pk in packets), rgb)
    except (av.FFmpegError, ValueError) as e:
        raise corrupt(Path(path), f"camera {camera!r} has undecodable video ({e})") from e
    if len(frames) == 0:
        shape = (0, int(settings["height"]), int(settings["width"])) + ((3,) if rgb else ())
        return np.zeros(shape, dtype=np.uint8)
    return frames


def read_occupancy(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Times (T,) [s] and uint8 class grids (T, rows, cols) of the occupancy labels."""
    with open_drive_log(path) as (_, reader, metadata):
        start_ns = int(metadata["drive_log"]["start_time_ns"])
        times, grids = [], []
        for _, _, label in messages(reader, start_ns, [OCCUPANCY_TOPIC]):
            assert isinstance(label, Grid)
            cells = np.frombuffer(label.cells, dtype=np.uint8)
            grids.append(cells.reshape(-1, label.row_stride)[:, : label.column_count])
            times.append(label.t_s)
    if not grids:
        return np.zeros(0), np.zeros((0, 0, 0), dtype=np.uint8)
    return np.array(times), np.stack(grids)


def read_scene(path: str | os.PathLike[str]) -> SceneLog:
    """The ``/scene`` channel: every logged moment's objects, in time order, as columns.

    A log without a scene channel (written before it existed) gives an empty
    :class:`~dojo.drivelog.scene.SceneLog`; a malformed scene message is a
    :class:`~dojo.errors.CorruptLogError` whose reason names the channel and the time.
    """
    with open_drive_log(path) as (_, reader, metadata):
        start_ns = int(metadata["drive_log"]["start_time_ns"])
        frames = []
        for _, _, item in messages(reader, start_ns, [SCENE_TOPIC]):
            assert isinstance(item, SceneFrame)
            frames.append(item)
    return SceneLog.of(frames)
