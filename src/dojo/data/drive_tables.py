"""One drive log as the clip store's tables: parsed, checked, cut into clips (see ingest).

:func:`parse` reads every message once with the drive-log decoder (:mod:`dojo.drivelog.decode`)
and checks the channels; :func:`build_tables` checks the video (every access unit decodes),
cuts the frames into clips that start on keyframes and builds the Parquet tables of
:mod:`dojo.data.store`. Both raise :class:`~dojo.errors.CorruptLogError` whose ``reason`` is the
one sentence ingest records when it quarantines the file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import av
import numpy as np
import pyarrow as pa

from dojo.data.store import CLIP_ID_CHARS, MAX_CLIP_S, TABLES
from dojo.drivelog import decode
from dojo.drivelog.decode import Grid, Pose, open_drive_log
from dojo.drivelog.format import (
    CALIBRATION_TOPIC,
    CAMERA_MOUNTS_TOPIC,
    CAMERA_TOPIC,
    TELEMETRY_TOPIC,
    topic_schemas,
)
from dojo.drivelog.scene import SceneFrame, SceneLog
from dojo.drivelog.telemetry import Telemetry, columns
from dojo.drivelog.video import is_keyframe
from dojo.errors import ConfigError, CorruptLogError


def _bad(why: str) -> CorruptLogError:
    """A drive log that cannot be ingested; ``why`` (one sentence) is its quarantine reason."""
    return CorruptLogError(f"The drive log cannot be ingested: {why}.", reason=why)


@dataclass
class _Camera:
    """One camera's access units in file order, with their log times [ns]."""

    times_ns: list[int] = field(default_factory=list)
    units: list[bytes] = field(default_factory=list)


@dataclass
class Parsed:
    """Every message of one drive log, decoded, and its metadata records."""

    config: dict[str, str]
    settings: dict[str, str]
    summary: dict[str, str]
    cameras: tuple[str, ...]
    video: dict[str, _Camera]
    telemetry: list[dict[str, Any]]
    poses: list[Pose]
    events: list[dict[str, Any]]
    labels: list[tuple[float, int, int, float, bytes]]  # t_s, rows, cols, cell_m, grid
    scenes: list[SceneFrame] = field(default_factory=list)


def parse(path: Path) -> Parsed:
    """Read every message of a drive log once; a CorruptLogError says what is wrong with it."""
    try:
        with open_drive_log(path) as (_, reader, metadata):
            settings = metadata["drive_log"]
            try:
                cameras = tuple(json.loads(settings["cameras"]))
                start_ns = int(settings["start_time_ns"])
            except (KeyError, ValueError, TypeError) as e:
                raise _bad(f"its drive_log metadata is incomplete ({e})") from e
            summary = reader.get_summary()
            expected, optional = topic_schemas(cameras)
            present = {}
            for ch in summary.channels.values():
                schema = summary.schemas.get(ch.schema_id)
                name = schema.name if schema else ""
                want = expected.get(ch.topic)
                if want is None:
                    raise _bad(f"it has channel {ch.topic!r} with unknown schema {name!r}")
                if name != want or ch.message_encoding != "json":
                    raise _bad(
                        f"channel {ch.topic!r} has schema {name!r} ({ch.message_encoding}); "
                        f"expected {want!r} (json)"
                    )
                present[ch.topic] = ch.id
            missing = [t for t in expected if t not in present and t not in optional]
            if missing:
                raise _bad(f"it has no {', '.join(missing)} channel")
            camera_of = {CAMERA_TOPIC.format(c): c for c in cameras}
            video = {c: _Camera() for c in cameras}
            telemetry: list[dict[str, Any]] = []
            poses: list[Pose] = []
            events: list[dict[str, Any]] = []
            labels = []
            scenes: list[SceneFrame] = []
            # camera mounts and calibrations: static rig geometry, not stored per drive yet
            static = {CAMERA_MOUNTS_TOPIC} | {CALIBRATION_TOPIC.format(c) for c in cameras}
            topics = [t for t in present if t not in static]
            for topic, ns, item in decode.messages(reader, start_ns, topics, log_time_order=False):
                cam = camera_of.get(topic)
                if cam is not None:
                    assert isinstance(item, bytes)
                    stream = video[cam]
                    stream.times_ns.append(ns)
                    stream.units.append(item)
                elif isinstance(item, Pose):
                    poses.append(item)
                elif isinstance(item, SceneFrame):
                    scenes.append(item)
                elif isinstance(item, Grid):
                    cols = int(item.column_count)
                    if cols <= 0 or len(item.cells) % cols:
                        raise _bad(
                            f"an occupancy grid at {item.t_s:.1f} s has {len(item.cells)} bytes "
                            f"for {cols} columns"
                        )
                    labels.append(
                        (item.t_s, len(item.cells) // cols, cols, item.cell_m, item.cells)
                    )
                elif isinstance(item, dict):
                    (telemetry if topic == TELEMETRY_TOPIC else events).append(item)
            return Parsed(
                config=metadata.get("drive", {}),
                settings=settings,
                summary=metadata.get("summary", {}),
                cameras=cameras,
                video=video,
                telemetry=telemetry,
                poses=poses,
                events=events,
                labels=labels,
                scenes=scenes,
            )
    except CorruptLogError:
        raise
    except ConfigError as e:  # the file went away after it was found: the sentence says so
        raise _bad(str(e).rstrip(".")) from e
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise _bad(f"a message is malformed ({type(e).__name__}: {e})") from e


def _check_decodes(camera: str, units: list[bytes], width: int, height: int) -> None:
    """Decode every access unit once; a CorruptLogError names the camera and frame that fail."""
    ctx = av.CodecContext.create("h264", "r")
    decoded = 0
    for i, unit in enumerate(units):
        try:
            frames = ctx.decode(av.Packet(unit))
        except (av.FFmpegError, ValueError) as e:
            raise _bad(f"camera {camera!r} video fails to decode at frame {i} ({e})") from e
        for frame in frames:
            if (frame.width, frame.height) != (width, height):
                raise _bad(
                    f"camera {camera!r} video is {frame.width}x{frame.height}, "
                    f"the log says {width}x{height}"
                )
            decoded += 1
    try:
        decoded += len(ctx.decode(None))
    except (av.FFmpegError, ValueError) as e:
        raise _bad(f"camera {camera!r} video fails to decode at its end ({e})") from e
    if decoded != len(units):
        raise _bad(f"camera {camera!r} decodes to {decoded} frames from {len(units)} access units")


# ------------------------------------------------------------------------------- building
def _clip_starts(times_s: np.ndarray, all_key: np.ndarray, fps: float) -> list[int]:
    """Frame indices where clips begin: at gaps in the frames, and every MAX_CLIP_S at a keyframe."""
    starts = [0]
    for i in range(1, len(times_s)):
        if not all_key[i]:
            continue
        gap = times_s[i] - times_s[i - 1] > 1.5 / fps
        if gap or times_s[i] - times_s[starts[-1]] >= MAX_CLIP_S - 0.5 / fps:
            starts.append(i)
    return starts


def _nearest_frames(times_s: np.ndarray, t: np.ndarray, fps: float) -> np.ndarray:
    """(n,) int32: the frame at each drive time ``t`` (within half a frame; a tie goes to the
    later frame), or -1."""
    out = np.full(len(t), -1, dtype=np.int32)
    if not len(times_s) or not len(t):
        return out
    after = np.clip(np.searchsorted(times_s, t), 0, len(times_s) - 1)
    before = np.maximum(after - 1, 0)
    later = np.abs(times_s[after] - t) <= np.abs(times_s[before] - t)
    near = np.where(later, after, before)
    ok = np.abs(times_s[near] - t) <= 0.5 / fps
    out[ok] = near[ok]
    return out


def _time(record: dict[str, Any]) -> float:
    return float(record["t_s"])


def _extra(record: dict[str, Any], known: Sequence[str]) -> str | None:
    rest = {k: v for k, v in record.items() if k not in known and k != "t_s"}
    return json.dumps(rest, sort_keys=True) if rest else None


def build_tables(
    parsed: Parsed, drive_id: str, source: Path, sha: str, size: int
) -> tuple[dict[str, pa.Table], dict[str, bytes], int]:
    """The drive's tables, its per-camera video files, and its clip count."""
    settings, cameras = parsed.settings, parsed.cameras
    start_ns = int(settings["start_time_ns"])
    fps = float(settings["fps"])
    width, height = int(settings["width"]), int(settings["height"])
    first = parsed.video[cameras[0]]
    for cam in cameras[1:]:
        if parsed.video[cam].times_ns != first.times_ns:
            raise _bad(f"camera {cam!r} has other frame times than camera {cameras[0]!r}")
    n = len(first.times_ns)  # 0 for a trigger-only log without windows: telemetry alone
    times_s = np.array([decode.t_s(t, start_ns) for t in first.times_ns], dtype=np.float64)
    if np.any(np.diff(times_s) <= 0):
        raise _bad("its camera frames are not in time order")
    keys = np.array(
        [[is_keyframe(u) for u in parsed.video[c].units] for c in cameras], dtype=bool
    ).reshape(len(cameras), n)
    all_key: np.ndarray = np.asarray(keys.all(axis=0))  # (n,) a keyframe in every camera
    if n and not all_key[0]:
        raise _bad("its video does not start on a keyframe in every camera")
    for cam in cameras:
        _check_decodes(cam, parsed.video[cam].units, width, height)

    starts = _clip_starts(times_s, all_key, fps) if n else []
    ends = starts[1:] + [n] if n else []
    clip_of_frame = np.empty(n, dtype=np.int64)
    for k, (a, b) in enumerate(zip(starts, ends, strict=True)):
        clip_of_frame[a:b] = k

    label_times = np.array([lab[0] for lab in parsed.labels], dtype=np.float64)
    label_frame = _nearest_frames(times_s, label_times, fps).tolist()
    labels_of_clip: dict[int, list[int]] = {}
    for li, f in enumerate(label_frame):
        if f >= 0:
            labels_of_clip.setdefault(int(clip_of_frame[f]), []).append(li)

    clip_ids, hashes = [], []
    for k, (a, b) in enumerate(zip(starts, ends, strict=True)):
        h = hashlib.sha256()
        for cam in cameras:
            h.update(cam.encode() + b"\0")
            for unit in parsed.video[cam].units[a:b]:
                h.update(unit)
        for li in labels_of_clip.get(k, []):
            h.update(parsed.labels[li][4])
        hashes.append(h.hexdigest())
        clip_ids.append(hashes[-1][:CLIP_ID_CHARS])

    video: dict[str, bytes] = {}
    cam_col, frame_col, t_col, off_col, size_col, key_col, clip_col = [], [], [], [], [], [], []
    for ci, cam in enumerate(cameras):
        units = parsed.video[cam].units
        sizes = np.array([len(u) for u in units], dtype=np.int64)
        offsets = np.cumsum(sizes) - sizes  # (n,) start of each unit in the camera's file
        video[cam] = b"".join(units)
        cam_col += [cam] * n
        frame_col.append(np.arange(n, dtype=np.int32))
        t_col.append(times_s)
        off_col.append(offsets)
        size_col.append(sizes.astype(np.int32))
        key_col.append(keys[ci])
        clip_col += [clip_ids[k] for k in clip_of_frame]
    frames = pa.table(
        {
            "drive_id": [drive_id] * (n * len(cameras)),
            "clip_id": clip_col,
            "frame": np.concatenate(frame_col),
            "t_s": np.concatenate(t_col),
            "camera": cam_col,
            "byte_offset": np.concatenate(off_col),
            "byte_size": np.concatenate(size_col),
            "keyframe": np.concatenate(key_col),
        },
        schema=TABLES["frames"],
    )
    cfg = parsed.config
    family, car_id, mode = cfg.get("family", ""), cfg.get("car_id", ""), cfg.get("mode", "")
    clips = pa.table(
        {
            "clip_id": clip_ids,
            "drive_id": [drive_id] * len(starts),
            "start_frame": starts,
            "end_frame": ends,
            "t0_s": [float(times_s[a]) for a in starts],
            "t1_s": [float(times_s[b - 1]) for b in ends],
            "frames": [b - a for a, b in zip(starts, ends, strict=True)],
            "content_hash": hashes,
            "family": [family] * len(starts),
            "car_id": [car_id] * len(starts),
            "mode": [mode] * len(starts),
        },
        schema=TABLES["clips"],
    )
    tele = [Telemetry.from_message(r["t_s"], r) for r in sorted(parsed.telemetry, key=_time)]
    telemetry = pa.table(
        {"drive_id": [drive_id] * len(tele), **columns(tele)}, schema=TABLES["telemetry"]
    )
    poses_sorted = sorted(parsed.poses)
    poses = pa.table(
        {
            "drive_id": [drive_id] * len(poses_sorted),
            **{
                name: [p[i] for p in poses_sorted]
                for i, name in enumerate(("t_s", "x_m", "y_m", "z_m", "yaw_rad"))
            },
        },
        schema=TABLES["poses"],
    )
    evs = sorted(parsed.events, key=_time)
    events = pa.table(
        {
            "drive_id": [drive_id] * len(evs),
            "t_s": [r["t_s"] for r in evs],
            "kind": [str(r["kind"]) for r in evs],
            "critical": [bool(r.get("critical", False)) for r in evs],
            "reason": [str(r.get("reason", "")) for r in evs],
            "extra": [_extra(r, ("kind", "critical", "reason", "timestamp")) for r in evs],
        },
        schema=TABLES["events"],
    )
    order = sorted(range(len(parsed.labels)), key=lambda i: parsed.labels[i][0])
    labels = pa.table(
        {
            "drive_id": [drive_id] * len(order),
            "clip_id": [
                clip_ids[clip_of_frame[label_frame[i]]] if label_frame[i] >= 0 else None
                for i in order
            ],
            "frame": [label_frame[i] for i in order],
            "t_s": [parsed.labels[i][0] for i in order],
            "rows": [parsed.labels[i][1] for i in order],
            "cols": [parsed.labels[i][2] for i in order],
            "cell_m": [parsed.labels[i][3] for i in order],
            "grid": [parsed.labels[i][4] for i in order],
        },
        schema=TABLES["labels"],
    )

    def whole(key: str, default: int = -1) -> int:
        try:
            return int(cfg.get(key, default))
        except (TypeError, ValueError):
            return default

    scene = _scene_table(parsed.scenes, drive_id, times_s, fps)
    duration = tele[-1].t_s - tele[0].t_s if tele else 0.0  # tele is in time order
    drives = pa.table(
        {
            "drive_id": [drive_id],
            "source": [source.name],
            "source_sha256": [sha],
            "source_bytes": [size],
            "status": [parsed.summary.get("status", "unknown")],
            "car_id": [car_id],
            "drive": [whole("drive")],
            "family": [family],
            "seed": [whole("seed")],
            "mode": [mode],
            "policy": [cfg.get("policy", "")],
            "logging": [cfg.get("logging", "")],
            "cameras": [list(cameras)],
            "width_px": [width],
            "height_px": [height],
            "rgb": [bool(json.loads(settings.get("rgb", "false")))],
            "fps": [fps],
            "keyframe_interval": [int(settings.get("keyframe_interval_frames", 0))],
            "frames": [n],
            "duration_s": [duration],
            "config": [json.dumps(cfg, sort_keys=True)],
            "ingested_at": [datetime.now(timezone.utc)],
            "has_scene": [bool(parsed.scenes)],
        },
        schema=TABLES["drives"],
    )
    tables = {
        "drives": drives,
        "clips": clips,
        "frames": frames,
        "telemetry": telemetry,
        "poses": poses,
        "events": events,
        "labels": labels,
        "scene": scene,
    }
    return tables, video, len(starts)


def _scene_table(
    frames: list[SceneFrame], drive_id: str, times_s: np.ndarray, fps: float
) -> pa.Table:
    """The scene rows in time order, each moment tied to its camera frame (-1 where none)."""
    log = SceneLog.of(frames)
    if np.any(np.diff(log.times_s) <= 0):
        i = int(np.argmin(np.diff(log.times_s) > 0))
        raise _bad(f"it has two /scene messages at {log.times_s[i]:.3f} s")
    frame = _nearest_frames(times_s, log.times_s, fps)
    col, counts = log.columns, np.diff(log.offsets)
    return pa.table(
        {
            "drive_id": [drive_id] * len(col["id"]),
            "t_s": log.t_s,
            "frame": np.repeat(frame, counts),
            "object_id": col["id"].astype(np.int32),
            "kind": col["kind"],
            **{k: col[k] for k in ("x_m", "y_m", "yaw_rad", "speed_mps")},
            **{k: col[k] for k in ("length_m", "width_m", "height_m")},
            "lane": col["lane"].astype(np.int16),
            "s_m": col["s_m"],
            "d_m": col["d_m"],
        },
        schema=TABLES["scene"],
    )


__all__ = ["Parsed", "build_tables", "parse"]
