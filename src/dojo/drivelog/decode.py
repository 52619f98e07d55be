"""The one MCAP decoder of drive logs, shared by the reader and the data engine's ingest.

:func:`open_drive_log` checks a file's markers, summary and metadata and hands out a seeking
reader; :func:`messages` walks it and decodes each message into what its channel carries
(:class:`Pose`, :class:`Grid`, :class:`Mount`, a :class:`~dojo.drivelog.scene.SceneFrame`, an
access unit's bytes, or a telemetry, event or camera-calibration record). Any failure to parse a file becomes a :class:`~dojo.errors.CorruptLogError` that names
the file, with ``reason`` saying what is wrong in words.
"""

from __future__ import annotations

import base64
import json
import os
import struct
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import zstandard
from mcap.exceptions import McapError
from mcap.reader import make_reader

from dojo.drivelog.format import (
    CALIBRATION_TOPIC,
    CAMERA_FRAME,
    CAMERA_MOUNTS_TOPIC,
    EVENTS_TOPIC,
    MCAP_MAGIC,
    OCCUPANCY_TOPIC,
    POSE_TOPIC,
    SCENE_TOPIC,
    TELEMETRY_TOPIC,
)
from dojo.drivelog.pose import yaw_of
from dojo.drivelog.scene import SceneFrame, decode_scene
from dojo.errors import ConfigError, CorruptLogError

READ_ERRORS = (
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


def corrupt(path: Path, why: str) -> CorruptLogError:
    """The error for a drive log that cannot be read; ``why`` becomes its ``reason``."""
    return CorruptLogError(
        f"{path} is not a readable drive log: {why}.", reason=why, path=str(path)
    )


@contextmanager
def open_drive_log(
    path: str | os.PathLike[str],
) -> Iterator[tuple[Path, Any, dict[str, dict[str, str]]]]:
    """A seeking MCAP reader over a finished drive log, and its metadata records by name.

    Any failure to parse the file, here or while the caller reads messages, becomes a
    CorruptLogError that names the file and what is wrong; a path that is not a file is a
    ConfigError.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"Drive log {p} does not exist or is not a file.")
    try:
        f = open(p, "rb")  # noqa: SIM115 -- closed by the with below
    except OSError as e:
        raise ConfigError(f"Drive log {p} cannot be opened ({e.strerror}).") from e
    with f:
        head = f.read(len(MCAP_MAGIC))
        f.seek(max(f.seek(0, os.SEEK_END) - len(MCAP_MAGIC), 0))
        if head != MCAP_MAGIC:
            raise corrupt(p, "it is not an MCAP file (wrong magic bytes at the start)")
        if f.read() != MCAP_MAGIC:
            raise corrupt(p, "it is truncated (no MCAP magic at the end: never closed, or cut)")
        f.seek(0)
        try:
            reader = make_reader(f, validate_crcs=True)
            summary = reader.get_summary()
            metadata = {m.name: dict(m.metadata) for m in reader.iter_metadata()}
        except READ_ERRORS as e:
            raise corrupt(p, f"its summary is corrupt ({type(e).__name__}: {e})") from e
        stats = summary.statistics if summary is not None else None
        if summary is None or stats is None or (stats.message_count and not summary.chunk_indexes):
            raise corrupt(p, "it has no summary, statistics or chunk index")
        if "drive_log" not in metadata:
            raise corrupt(p, "it is an MCAP file but has no 'drive_log' metadata record")
        try:
            yield p, reader, metadata
        except CorruptLogError as e:
            if e.path is None:  # a message decoder's error: name the file
                raise corrupt(p, e.reason) from e
            raise
        except ConfigError:
            raise
        except READ_ERRORS as e:
            raise corrupt(p, f"a chunk is corrupt ({type(e).__name__}: {e})") from e


def t_s(log_time_ns: int, start_ns: int) -> float:
    """Drive time [s] of a message's log time [ns]."""
    return (log_time_ns - start_ns) / 1e9


_DATA_KEY = b'"data":"'


def split_data(raw: bytes) -> tuple[dict[str, Any], bytes]:
    """A JSON record without its base64 ``data`` field, and that field decoded.

    Camera frames and occupancy grids are mostly one long base64 string; scanning it as JSON
    and again as base64 doubles the work. The string is cut out where the record holds it
    plainly (no escapes; checked by the strict base64 decode), the rest parsed as JSON with
    ``"data": null`` in its place; any other spelling goes through ``json.loads`` whole.
    """
    i = raw.find(_DATA_KEY)
    j = raw.find(b'"', i + len(_DATA_KEY)) if i >= 0 else -1
    if j > 0:
        try:
            data = base64.b64decode(raw[i + len(_DATA_KEY) : j], validate=True)
            record = json.loads(raw[:i] + b'"data":null' + raw[j + 1 :])
        except ValueError:
            pass
        else:
            if isinstance(record, dict) and "data" in record:
                return record, data
    record = json.loads(raw)
    if not isinstance(record, dict) or not isinstance(record.get("data"), str):
        why = "a camera or label message has no base64 'data' string"
        raise CorruptLogError(f"The drive log is corrupt: {why}.", reason=why)
    return record, base64.b64decode(record["data"], validate=True)


class Pose(NamedTuple):
    """The ego's pose at drive time ``t_s`` [s]: position [m] and heading [rad] in the world."""

    t_s: float
    x_m: float
    y_m: float
    z_m: float
    yaw_rad: float


@dataclass(frozen=True)
class Grid:
    """One occupancy label: its cells (row-major bytes) and their layout."""

    t_s: float
    cells: bytes
    column_count: int
    row_stride: int  # [bytes]
    cell_m: float


@dataclass(frozen=True)
class Mount:
    """Where a camera's optical frame sits in the ego frame: position [m] and quaternion."""

    camera: str
    pose: tuple[float, ...]  # x, y, z [m], qx, qy, qz, qw


def pose(data: bytes, t: float) -> Pose:
    """A ``/ego/pose`` message (foxglove.FrameTransform) as a :class:`Pose`."""
    record = json.loads(data)
    tr, rot = record["translation"], record["rotation"]
    return Pose(t, tr["x"], tr["y"], tr["z"], yaw_of(rot["z"], rot["w"]))


def mount(data: bytes) -> Mount:
    """A ``/camera_mounts`` message as the camera's :class:`Mount`."""
    record = json.loads(data)
    tr, rot = record["translation"], record["rotation"]
    name = record["child_frame_id"].removeprefix(CAMERA_FRAME.format(""))
    return Mount(name, (tr["x"], tr["y"], tr["z"], rot["x"], rot["y"], rot["z"], rot["w"]))


def record(data: bytes, t: float) -> dict[str, Any]:
    """A telemetry or event message as a dict: ``t_s`` first, then its fields as logged."""
    fields = json.loads(data)
    fields.pop("timestamp", None)
    return {"t_s": t, **fields}


def grid(data: bytes, t: float) -> Grid:
    """A ``/labels/occupancy`` message (foxglove.Grid) as a :class:`Grid`."""
    fields, cells = split_data(data)
    return Grid(
        t, cells, fields["column_count"], fields["row_stride"], float(fields["cell_size"]["x"])
    )


def access_unit(data: bytes) -> bytes:
    """A camera message's H.264 access unit (Annex B)."""
    return split_data(data)[1]


Decoded = Pose | Grid | Mount | SceneFrame | bytes | dict[str, Any]
_CALIBRATION_SUFFIX = CALIBRATION_TOPIC.split("{}")[1]  # "/calibration"


def messages(
    reader: Any,
    start_ns: int,
    topics: Iterable[str] | None = None,
    *,
    log_time_order: bool = True,
) -> Iterator[tuple[str, int, Decoded]]:
    """``(topic, log time [ns], decoded)`` for each message on ``topics`` (all if None).

    Camera topics (any other topic) decode to their access unit's bytes; a camera's
    calibration to a record like telemetry's.
    """
    chosen = None if topics is None else list(topics)
    for _, channel, message in reader.iter_messages(topics=chosen, log_time_order=log_time_order):
        topic, data, ns = channel.topic, message.data, message.log_time
        decoded: Decoded
        if topic == POSE_TOPIC:
            decoded = pose(data, t_s(ns, start_ns))
        elif topic == SCENE_TOPIC:
            decoded = decode_scene(data, t_s(ns, start_ns))
        elif topic in (TELEMETRY_TOPIC, EVENTS_TOPIC) or topic.endswith(_CALIBRATION_SUFFIX):
            decoded = record(data, t_s(ns, start_ns))
        elif topic == OCCUPANCY_TOPIC:
            decoded = grid(data, t_s(ns, start_ns))
        elif topic == CAMERA_MOUNTS_TOPIC:
            decoded = mount(data)
        else:
            decoded = access_unit(data)
        yield topic, ns, decoded


__all__ = [
    "READ_ERRORS",
    "Decoded",
    "Grid",
    "Mount",
    "Pose",
    "access_unit",
    "corrupt",
    "messages",
    "open_drive_log",
    "split_data",
    "t_s",
]
