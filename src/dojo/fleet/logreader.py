"""Reading drive logs with the official ``mcap`` reader: metadata, telemetry, events, video."""

from __future__ import annotations

import base64
import json
import math
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
import zstandard
from mcap.exceptions import McapError
from mcap.reader import make_reader

from dojo.errors import DojoConfigError
from dojo.fleet.logformat import (
    CAMERA_FRAME,
    CAMERA_MOUNTS_TOPIC,
    CAMERA_TOPIC,
    EVENTS_TOPIC,
    MCAP_MAGIC,
    OCCUPANCY_TOPIC,
    POSE_TOPIC,
    TELEMETRY_TOPIC,
)
from dojo.fleet.video import decode_access_units, is_keyframe

_READ_ERRORS = (
    McapError,
    ValueError,  # includes json, CRC and PyAV data errors
    KeyError,
    IndexError,
    TypeError,
    struct.error,
    EOFError,
    StopIteration,
    OSError,  # seeking before the start of a short file
    zstandard.ZstdError,
)


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

    @property
    def message_counts(self) -> dict[str, int]:
        return {topic: ch.message_count for topic, ch in self.channels.items()}

    @property
    def status(self) -> str:
        """'complete', or 'interrupted: <exception>' when the drive ended by an exception."""
        return self.summary.get("status", "unknown")


def _corrupt(path: Path, why: str) -> DojoConfigError:
    return DojoConfigError(f"{path} is not a readable drive log: {why}.")


@contextmanager
def open_drive_log(
    path: str | os.PathLike[str],
) -> Iterator[tuple[Path, Any, dict[str, dict[str, str]]]]:
    """A seeking MCAP reader over a finished drive log, and its metadata records by name.

    Any failure to parse the file, here or while the caller reads messages, becomes a
    DojoConfigError that names the file and what is wrong.
    """
    p = Path(path)
    if not p.is_file():
        raise DojoConfigError(f"Drive log {p} does not exist or is not a file.")
    try:
        f = open(p, "rb")  # noqa: SIM115 -- closed by the with below
    except OSError as e:
        raise DojoConfigError(f"Drive log {p} cannot be opened ({e.strerror}).") from e
    with f:
        head = f.read(len(MCAP_MAGIC))
        f.seek(max(f.seek(0, os.SEEK_END) - len(MCAP_MAGIC), 0))
        if head != MCAP_MAGIC:
            raise _corrupt(p, "it is not an MCAP file (wrong magic bytes at the start)")
        if f.read() != MCAP_MAGIC:
            raise _corrupt(p, "it is truncated (no MCAP magic at the end: never closed, or cut)")
        f.seek(0)
        try:
            reader = make_reader(f, validate_crcs=True)
            summary = reader.get_summary()
            metadata = {m.name: dict(m.metadata) for m in reader.iter_metadata()}
        except _READ_ERRORS as e:
            raise _corrupt(p, f"its summary is corrupt ({type(e).__name__}: {e})") from e
        stats = summary.statistics if summary is not None else None
        if summary is None or stats is None or (stats.message_count and not summary.chunk_indexes):
            raise _corrupt(p, "it has no summary, statistics or chunk index")
        if "drive_log" not in metadata:
            raise _corrupt(p, "it is an MCAP file but has no 'drive_log' metadata record")
        try:
            yield p, reader, metadata
        except DojoConfigError:
            raise
        except _READ_ERRORS as e:
            raise _corrupt(p, f"a chunk is corrupt ({type(e).__name__}: {e})") from e


def _t_s(log_time_ns: int, start_ns: int) -> float:
    return (log_time_ns - start_ns) / 1e9


def read_drive_log(path: str | os.PathLike[str]) -> DriveLog:
    """Open a finished drive log: channels, message counts, metadata, telemetry, events, poses.

    Raises :class:`DojoConfigError` for a missing, truncated or corrupt file. Video stays
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
        for _, channel, message in reader.iter_messages(
            topics=[TELEMETRY_TOPIC, EVENTS_TOPIC, POSE_TOPIC, CAMERA_MOUNTS_TOPIC]
        ):
            data = json.loads(message.data)
            t = _t_s(message.log_time, start_ns)
            if channel.topic == CAMERA_MOUNTS_TOPIC:
                tr, rot = data["translation"], data["rotation"]
                name = data["child_frame_id"].removeprefix(CAMERA_FRAME.format(""))
                mounts[name] = (tr["x"], tr["y"], tr["z"], rot["x"], rot["y"], rot["z"], rot["w"])
                continue
            if channel.topic == POSE_TOPIC:
                tr, rot = data["translation"], data["rotation"]
                yaw = 2.0 * math.atan2(rot["z"], rot["w"])
                poses.append((t, tr["x"], tr["y"], tr["z"], math.remainder(yaw, 2 * math.pi)))
                continue
            data.pop("timestamp", None)
            (telemetry if channel.topic == TELEMETRY_TOPIC else events).append({"t_s": t, **data})
        return DriveLog(
            path=p,
            channels=channels,
            config=metadata.get("drive", {}),
            summary=metadata.get("summary", {}),
            cameras=tuple(json.loads(settings["cameras"])),
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
        )


def _video(path: str | os.PathLike[str], camera: str) -> tuple[list[VideoPacket], dict[str, str]]:
    with open_drive_log(path) as (p, reader, metadata):
        settings = metadata["drive_log"]
        cameras = json.loads(settings["cameras"])
        if camera not in cameras:
            raise DojoConfigError(f"camera={camera!r} is not in {p}; it has {', '.join(cameras)}.")
        start_ns = int(settings["start_time_ns"])
        out = []
        for _, _, message in reader.iter_messages(topics=[CAMERA_TOPIC.format(camera)]):
            data = base64.b64decode(json.loads(message.data)["data"], validate=True)
            out.append(VideoPacket(_t_s(message.log_time, start_ns), data, is_keyframe(data)))
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
        raise _corrupt(Path(path), f"camera {camera!r} has undecodable video ({e})") from e
    if len(frames) == 0:
        shape = (0, int(settings["height"]), int(settings["width"])) + ((3,) if rgb else ())
        return np.zeros(shape, dtype=np.uint8)
    return frames


def read_occupancy(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Times (T,) [s] and uint8 class grids (T, rows, cols) of the occupancy labels."""
    with open_drive_log(path) as (_, reader, metadata):
        start_ns = int(metadata["drive_log"]["start_time_ns"])
        times, grids = [], []
        for _, _, message in reader.iter_messages(topics=[OCCUPANCY_TOPIC]):
            data = json.loads(message.data)
            cells = np.frombuffer(base64.b64decode(data["data"], validate=True), dtype=np.uint8)
            grids.append(cells.reshape(-1, data["row_stride"])[:, : data["column_count"]])
            times.append(_t_s(message.log_time, start_ns))
    if not grids:
        return np.zeros(0), np.zeros((0, 0, 0), dtype=np.uint8)
    return np.array(times), np.stack(grids)
