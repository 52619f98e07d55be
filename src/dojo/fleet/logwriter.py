"""Writing drive logs: :class:`DriveLogWriter` (format in :mod:`dojo.fleet.drivelog`)."""

from __future__ import annotations

import base64
import errno
import io
import json
import math
import os
import signal
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np
from mcap.writer import CompressionType, Writer

import dojo
from dojo.errors import DojoConfigError
from dojo.fleet import schemas
from dojo.fleet.logformat import (
    CAMERA_FRAME,
    CAMERA_MOUNTS_TOPIC,
    CAMERA_TOPIC,
    EGO_FRAME,
    EVENTS_TOPIC,
    OCCUPANCY_TOPIC,
    PARTIAL_SUFFIX,
    POSE_TOPIC,
    TELEMETRY_FIELDS,
    TELEMETRY_TOPIC,
    WORLD_FRAME,
)
from dojo.fleet.video import DEFAULT_CRF, VIDEO_FORMAT, X264_PRESETS, _H264Encoder, is_keyframe
from dojo.world.camera import CameraRig
from dojo.world.occupancy import CLASS_NAMES, OccupancySpec

_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}  # no space, or no quota left


# ------------------------------------------------------------------------------ validation
def _whole(name: str, value: object, low: int, high: int | None = None) -> int:
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if not ok or int(value) < low or (high is not None and int(value) > high):  # type: ignore[call-overload]
        limit = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise DojoConfigError(f"{name}={value!r} must be a whole number {limit}.")
    return int(value)  # type: ignore[call-overload]


def _finite(name: str, value: object) -> float:
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise DojoConfigError(f"{name}={value!r} must be a number.") from None
    if isinstance(value, (bool, np.bool_)) or not math.isfinite(x):
        raise DojoConfigError(f"{name}={value!r} must be a finite number.")
    return x


def _frame_size(name: str, value: object) -> int:
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if not ok or int(value) <= 0 or int(value) % 2:  # type: ignore[call-overload]
        raise DojoConfigError(
            f"{name}={value!r} must be a positive even number of pixels (H.264 4:2:0 halves it)."
        )
    return int(value)  # type: ignore[call-overload]


def _camera_names(cameras: Sequence[str]) -> tuple[str, ...]:
    if isinstance(cameras, str) or not cameras:
        raise DojoConfigError(f"cameras={cameras!r} must be a non-empty list of camera names.")
    names = tuple(cameras)
    for name in names:
        ok = isinstance(name, str) and name and all(c.isalnum() or c in "_-" for c in name)
        if not ok or not name.isascii():
            raise DojoConfigError(
                f"Camera name {name!r} must be ASCII letters, digits, '_' or '-' (it names a topic)."
            )
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DojoConfigError(f"Camera names must be unique; repeated: {', '.join(dupes)}.")
    return names


def _json_data(name: str, value: Any) -> Any:
    """``value`` as plain JSON data; numpy scalars and arrays and enums are converted."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return _finite(name, value)
    if isinstance(value, np.ndarray):
        return _json_data(name, value.tolist())
    if isinstance(value, (list, tuple)):
        return [_json_data(f"{name}[{i}]", v) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise DojoConfigError(f"{name} has a key that is not a string: {list(value)!r}.")
        return {k: _json_data(f"{name}.{k}", v) for k, v in value.items()}
    raise DojoConfigError(
        f"{name}={value!r} is not JSON data (numbers, strings, booleans, None, lists, dicts)."
    )


def _metadata_strings(metadata: Mapping[str, object] | None) -> dict[str, str]:
    """MCAP metadata is a str -> str map: strings stay, anything else is stored as JSON."""
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, Mapping):
        raise DojoConfigError(f"metadata={metadata!r} must be a dict of config values.")
    out = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not key:
            raise DojoConfigError(f"metadata key {key!r} must be a non-empty string.")
        data = _json_data(f"metadata[{key!r}]", value)
        out[key] = data if isinstance(data, str) else json.dumps(data, sort_keys=True)
    out.setdefault("software_version", dojo.__version__)
    return out


def _is_inf(value: object) -> bool:
    return isinstance(value, (float, np.floating)) and value == math.inf


def _check_uint8(name: str, value: object, shape: tuple[int, ...], layout: str) -> None:
    if not isinstance(value, np.ndarray) or value.dtype != np.uint8 or value.shape != shape:
        got = (
            f"{value.dtype} array of shape {value.shape}"
            if isinstance(value, np.ndarray)
            else type(value).__name__
        )
        raise DojoConfigError(
            f"{name} must be a uint8 array of shape {shape} ({layout}); got a {got}."
        )


def _stamp(ns: int) -> dict[str, int]:
    return {"sec": ns // 1_000_000_000, "nsec": ns % 1_000_000_000}


class _SigintGuard:
    """A SIGINT handler that defers Ctrl-C while any writer is inside a record.

    Installed once, in front of whatever handler was there (re-wrapped if someone replaces
    it), so that entering and leaving a record costs a counter, not two ``sigaction`` calls:
    logging writes tens of thousands of records a second. Used as ``with _GUARD:``; a class
    with ``__enter__`` rather than a generator, and the installed handler read from the C
    level, because both run for every record (``signal.getsignal`` alone costs ~7 us here, in
    turning the handler into an enum member).
    """

    def __init__(self) -> None:
        self.depth = 0
        self.pending = False
        self.previous: Any = None
        self._main = threading.main_thread()
        # signal.getsignal without the enum conversion; the public one where it is missing
        self._current = getattr(getattr(signal, "_signal", None), "getsignal", signal.getsignal)

    def handle(self, signum: int, frame: Any) -> None:
        if self.depth > 0:
            self.pending = True
        else:
            self.forward(frame)

    def forward(self, frame: Any) -> None:
        previous = self.previous
        if callable(previous):
            previous(signal.SIGINT, frame)  # the default handler raises KeyboardInterrupt
        elif previous == signal.SIG_DFL:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.raise_signal(signal.SIGINT)

    def armed(self) -> bool:
        """Make sure the guard is SIGINT's handler; False where it cannot be (not the main thread)."""
        if threading.current_thread() is not self._main:
            return False
        current = self._current(signal.SIGINT)
        if current == self.handle:
            return True
        if current is None:  # a handler installed outside Python: leave it alone
            return False
        self.previous = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, self.handle)
        return True

    def __enter__(self) -> None:
        """Hold back Ctrl-C until the block is done, so it never lands inside a record.

        Only the main thread can own signal handlers; elsewhere the block runs unprotected.
        """
        if threading.current_thread() is self._main:
            self.armed()
            self.depth += 1

    def __exit__(self, *exc: object) -> None:
        if threading.current_thread() is not self._main:
            return
        self.depth -= 1
        if self.depth == 0 and self.pending:
            self.pending = False
            self.forward(None)


_GUARD = _SigintGuard()


# ---------------------------------------------------------------------------------- writer
def optical_rotation(yaw_rad: float) -> tuple[float, float, float, float]:
    """Quaternion (x, y, z, w) of a level camera's optical frame in the ego frame.

    Optical axes (+z forward, +x right, +y down) seen from the ego frame (x forward, y left,
    z up) for a camera looking straight ahead: z -> (1, 0, 0), x -> (0, -1, 0), y -> (0, 0, -1),
    the quaternion (-1/2, 1/2, -1/2, 1/2); a camera turned ``yaw_rad`` left adds that turn
    about the ego's z axis.
    """
    half = 0.5 * yaw_rad
    return _quaternion_product((0.0, 0.0, math.sin(half), math.cos(half)), (-0.5, 0.5, -0.5, 0.5))


def _quaternion_product(
    a: tuple[float, ...], b: tuple[float, ...]
) -> tuple[float, float, float, float]:
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return (
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
        aw * bw - ax * bx - ay * by - az * bz,
    )


def camera_mounts(rig: CameraRig) -> list[tuple[float, float, float, float]]:
    """(x_m, y_m, z_m, yaw_rad) of each camera of a rig, in the ego frame."""
    return [(c.x_m, c.y_m, c.z_m, math.radians(c.yaw_deg)) for c in rig.cameras]


class DriveLogWriter:
    """Write one drive of one car to an MCAP file (see the module docstring for the layout).

    >>> with DriveLogWriter("drive.mcap", ["front"], 96, 48, metadata={"car_id": "car-7"}) as log:
    ...     log.write_frame(0.0, np.zeros((1, 48, 96), np.uint8))

    ``path``: the ``.mcap`` file to write (its folder must exist), or an open binary stream,
    which is written in place and left open. ``cameras``: camera names, in the order of the
    first axis of the images given to :meth:`write_frame`; ``width`` x ``height`` [px], both
    even. ``fps``: camera frame rate [Hz]. ``keyframe_interval_s``: time between keyframes [s]
    (rounded to whole frames). ``metadata``: the drive's config (family, seed, mode, car_id, ...),
    JSON values. ``rgb``: images are (n_cams, H, W, 3) instead of grey (n_cams, H, W).
    ``crf``/``preset``: libx264 quality (lower is better) and speed. ``chunk_size_bytes``: MCAP
    chunk size before zstd. ``overwrite``: replace an existing file. ``start_time_ns``: log time
    of ``t_s = 0`` [ns since the Unix epoch]; 0 keeps logs independent of the wall clock.

    Not thread-safe: one writer belongs to one thread.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | IO[bytes],
        cameras: Sequence[str],
        width: int,
        height: int,
        fps: float = 10.0,
        keyframe_interval_s: float = 1.0,
        metadata: Mapping[str, object] | None = None,
        *,
        rgb: bool = False,
        crf: int = DEFAULT_CRF,
        preset: str = "ultrafast",
        chunk_size_bytes: int = 1 << 20,
        overwrite: bool = False,
        start_time_ns: int = 0,
        camera_mounts: Sequence[Sequence[float]] | None = None,
    ) -> None:
        self._closed = True  # until the file is open: a failed __init__ leaves nothing to close
        self.cameras = _camera_names(cameras)
        self.width, self.height = _frame_size("width", width), _frame_size("height", height)
        self.fps = _finite("fps", fps)
        interval = _finite("keyframe_interval_s", keyframe_interval_s)
        if self.fps <= 0 or interval <= 0:
            bad = ("fps", fps) if self.fps <= 0 else ("keyframe_interval_s", keyframe_interval_s)
            raise DojoConfigError(f"{bad[0]}={bad[1]!r} must be > 0.")
        self.keyframe_interval = round(interval * self.fps)  # [frames]
        if self.keyframe_interval < 1:
            raise DojoConfigError(
                f"keyframe_interval_s={keyframe_interval_s!r} is under one frame at fps={fps!r}."
            )
        self.rgb = bool(rgb)
        self._crf = _whole("crf", crf, 1, 51)
        if preset not in X264_PRESETS:
            raise DojoConfigError(f"preset={preset!r} must be one of {', '.join(X264_PRESETS)}.")
        chunk = _whole("chunk_size_bytes", chunk_size_bytes, 1024)
        self._start_ns = _whole("start_time_ns", start_time_ns, 0)
        drive_meta = _metadata_strings(metadata)
        self._encoders = [
            _H264Encoder(
                self.width, self.height, self.fps, self.keyframe_interval, self._crf, preset, rgb
            )
            for _ in self.cameras
        ]
        self._frames, self._keyframes = 0, [0] * len(self.cameras)
        self._frame_ids = [json.dumps(CAMERA_FRAME.format(name)) for name in self.cameras]
        mounts = self._check_mounts(camera_mounts)
        self._last_frame_ns = -1
        self._pending: list[dict[int, int]] = [{} for _ in self.cameras]  # pts -> log time [ns]
        self._events, self._critical = 0, 0
        self._first_ns, self._last_ns = -1, -1
        self._failure = ""
        try:
            with _GUARD:
                self._stream, self.path, self._partial = self._open(path, overwrite)
                self.name = str(self.path) if self.path else str(getattr(path, "name", "<stream>"))
                self._closed = False
                with self._io():
                    self._writer = Writer(
                        self._stream, chunk_size=chunk, compression=CompressionType.ZSTD
                    )
                    self._writer.start(profile="", library=f"dojo/{dojo.__version__}")
                    self._channels = self._register()
                    self._counts = dict.fromkeys(self._channels.values(), 0)
                    if mounts:
                        self._write_mounts(mounts)
                    self._writer.add_metadata("drive", drive_meta)
                    self._writer.add_metadata("drive_log", self._settings(preset))
        except BaseException:  # e.g. Ctrl-C held back until here: leave no partial file behind
            if not self._closed:
                self._abort()
            raise

    @classmethod
    def from_rig(
        cls, path: str | os.PathLike[str] | IO[bytes], rig: CameraRig, **options: Any
    ) -> DriveLogWriter:
        """A writer for the cameras of a camera rig (their names, size and colour)."""
        cam = rig.cameras[0]
        options.setdefault("camera_mounts", camera_mounts(rig))
        return cls(path, rig.names, cam.width_px, cam.height_px, rgb=rig.rgb, **options)

    def _check_mounts(self, mounts: Sequence[Sequence[float]] | None) -> list[tuple[float, ...]]:
        if mounts is None:
            return []
        if isinstance(mounts, (str, bytes)) or len(mounts) != len(self.cameras):
            raise DojoConfigError(
                f"camera_mounts must give (x_m, y_m, z_m, yaw_rad) for each of the {len(self.cameras)} cameras."
            )
        out = []
        for name, mount in zip(self.cameras, mounts, strict=True):
            if isinstance(mount, (str, bytes)) or len(mount) != 4:
                raise DojoConfigError(
                    f"camera_mounts for {name!r} = {mount!r} must be (x_m, y_m, z_m, yaw_rad)."
                )
            out.append(tuple(_finite(f"camera_mounts {name}", v) for v in mount))
        return out

    def _write_mounts(self, mounts: list[tuple[float, ...]]) -> None:
        """Static ego -> camera transforms (Foxglove's 3D panel places the cameras with them)."""
        for name, (x, y, z, yaw) in zip(self.cameras, mounts, strict=True):
            qx, qy, qz, qw = optical_rotation(yaw)
            message = {
                "timestamp": _stamp(self._start_ns),
                "parent_frame_id": EGO_FRAME,
                "child_frame_id": CAMERA_FRAME.format(name),
                "translation": {"x": x, "y": y, "z": z},
                "rotation": {"x": qx, "y": qy, "z": qz, "w": qw},
            }
            self._put(CAMERA_MOUNTS_TOPIC, self._start_ns, message)

    # ------------------------------------------------------------------ setup
    def _open(
        self, target: str | os.PathLike[str] | IO[bytes], overwrite: bool
    ) -> tuple[IO[bytes], Path | None, Path | None]:
        if not isinstance(target, (str, os.PathLike)):
            if not callable(getattr(target, "write", None)):
                raise DojoConfigError(f"path={target!r} must be a file path or a binary stream.")
            if isinstance(target, io.RawIOBase):  # buffer it here, so that close() can flush it
                return io.BufferedWriter(target), None, None
            return target, None, None
        path = Path(target)
        folder = path.parent
        if not folder.is_dir():
            what = "is not a folder" if folder.exists() else "does not exist"
            raise DojoConfigError(
                f"Output folder {folder} {what}; create it before writing drive log {path.name}."
            )
        if path.is_dir():
            raise DojoConfigError(f"Drive log path {path} is a folder; give a file name.")
        if path.exists() and not overwrite:
            raise DojoConfigError(
                f"Drive log {path} already exists; pass overwrite=True or choose another name."
            )
        partial = path.with_name(path.name + PARTIAL_SUFFIX)
        try:
            stream = open(partial, "wb")  # noqa: SIM115 -- closed by close()
        except OSError as e:
            if e.errno in _DISK_FULL:
                raise DojoConfigError(f"The disk is full: cannot create {partial}.") from e
            raise DojoConfigError(
                f"Output folder {folder} is not writable ({e.strerror}): cannot create {partial.name}."
            ) from e
        return stream, path, partial

    def _register(self) -> dict[str, int]:
        w = self._writer
        enc, msg = schemas.SCHEMA_ENCODING, schemas.MESSAGE_ENCODING
        video = w.register_schema(
            "foxglove.CompressedVideo", enc, schemas.schema_bytes(schemas.COMPRESSED_VIDEO)
        )
        size = {"width": str(self.width), "height": str(self.height)}
        size["pixel_format"] = "rgb24" if self.rgb else "gray"
        channels = {
            CAMERA_TOPIC.format(name): w.register_channel(
                CAMERA_TOPIC.format(name), msg, video, size
            )
            for name in self.cameras
        }
        for topic, name, schema, meta in (
            (POSE_TOPIC, "foxglove.FrameTransform", schemas.FRAME_TRANSFORM, {}),
            (TELEMETRY_TOPIC, "dojo.Telemetry", schemas.TELEMETRY, {}),
            (EVENTS_TOPIC, "dojo.Event", schemas.EVENT, {}),
            (
                OCCUPANCY_TOPIC,
                "foxglove.Grid",
                schemas.GRID,
                {
                    "classes": json.dumps(list(CLASS_NAMES)),
                    "layout": "dojo.world.occupancy: row 0 farthest ahead, column 0 farthest left",
                },
            ),
        ):
            sid = w.register_schema(name, enc, schemas.schema_bytes(schema))
            channels[topic] = w.register_channel(topic, msg, sid, meta)
            if topic == POSE_TOPIC:  # the camera mounts share the FrameTransform schema
                channels[CAMERA_MOUNTS_TOPIC] = w.register_channel(
                    CAMERA_MOUNTS_TOPIC, msg, sid, {}
                )
        return channels

    def _settings(self, preset: str) -> dict[str, str]:
        return {
            "cameras": json.dumps(list(self.cameras)),
            "width": str(self.width),
            "height": str(self.height),
            "rgb": json.dumps(self.rgb),
            "fps": repr(self.fps),
            "keyframe_interval_frames": str(self.keyframe_interval),
            "video_format": VIDEO_FORMAT,
            "encoder": f"libx264 preset={preset} crf={self._crf} tune=zerolatency bframes=0",
            "start_time_ns": str(self._start_ns),
        }

    # ------------------------------------------------------------- plumbing
    @contextmanager
    def _io(self) -> Iterator[None]:
        """Turn a full disk into a DojoConfigError; any failed write leaves the writer closed."""
        try:
            yield
        except OSError as e:
            self._abort()
            if e.errno in _DISK_FULL:
                self._failure = "the disk was full"
                left = "the partial file was removed" if self._partial else "the stream is unusable"
                raise DojoConfigError(
                    f"The disk is full: drive log {self.name} could not be written "
                    f"({e.strerror}); {left}, logs closed before it are untouched."
                ) from e
            self._failure = f"writing failed ({e.strerror})"
            raise

    def _abort(self) -> None:
        self._closed = True
        self._encoders = []
        if self._partial is not None:
            with suppress(OSError):
                self._stream.close()
            with suppress(OSError):
                self._partial.unlink()

    def _check_open(self) -> None:
        if self._closed:
            why = f" after an error ({self._failure})" if self._failure else ""
            raise DojoConfigError(
                f"Drive log {self.name} was closed{why}; nothing more can be written."
            )

    def _log_ns(self, t_s: float) -> int:
        t = _finite("t_s", t_s)
        if t < 0:
            raise DojoConfigError(f"t_s={t_s!r} must be >= 0 s (time since the drive began).")
        return self._start_ns + round(t * 1e9)

    def _put(self, topic: str, ns: int, message: dict[str, Any]) -> None:
        data = json.dumps(message, separators=(",", ":"), allow_nan=False).encode()
        self._put_bytes(topic, ns, data)

    def _put_bytes(self, topic: str, ns: int, data: bytes) -> None:
        channel = self._channels[topic]
        seq = self._counts[channel]
        self._writer.add_message(channel, log_time=ns, data=data, publish_time=ns, sequence=seq)
        self._counts[channel] = seq + 1
        self._first_ns = ns if self._first_ns < 0 else min(self._first_ns, ns)
        self._last_ns = max(self._last_ns, ns)

    def _put_video(self, cam: int, pts: int, data: bytes) -> None:
        ns = self._pending[cam].pop(pts)
        self._keyframes[cam] += is_keyframe(data)
        name = self.cameras[cam]
        # the JSON by hand: this runs for every frame of every camera, and every part is
        # already safe (whole numbers, base64, a frame id escaped once by json.dumps)
        sec, nsec = divmod(ns, 1_000_000_000)
        message = (
            f'{{"timestamp":{{"sec":{sec},"nsec":{nsec}}},"frame_id":{self._frame_ids[cam]},'
            f'"data":"{base64.b64encode(data).decode()}","format":"{VIDEO_FORMAT}"}}'
        )
        self._put_bytes(CAMERA_TOPIC.format(name), ns, message.encode())

    # ------------------------------------------------------------------ writes
    def write_frame(self, t_s: float, images: np.ndarray, keyframe: bool = False) -> None:
        """One image per camera at drive time ``t_s`` [s], later than the previous frame's.

        ``images``: uint8 (n_cams, H, W) grey, or (n_cams, H, W, 3) RGB for an ``rgb`` writer.
        ``keyframe``: start a new group of pictures here (an IDR frame in every camera), as a
        log that records only windows of a drive does at each window's first frame, so every
        window decodes on its own; the regular keyframe interval then counts from here.
        """
        shape = (len(self.cameras), self.height, self.width) + ((3,) if self.rgb else ())
        _check_uint8("images", images, shape, f"cameras, height, width{', 3' if self.rgb else ''}")
        self.write_frames([t_s], images[None], keyframe)

    def write_frames(
        self, times_s: Sequence[float], images: np.ndarray, keyframe: bool = False
    ) -> None:
        """Several frames at once: ``images`` (T, n_cams, H, W[, 3]) uint8 at ``times_s`` (T,) [s].

        The same log as ``write_frame`` for each in turn (``keyframe`` applies to the first),
        but each camera's frames are encoded one after another: an encoder that stays warm in
        the CPU's caches is ~20% faster than one visited once per frame between other work.
        """
        self._check_open()
        ns = [self._log_ns(t) for t in times_s]
        shape = (len(ns), len(self.cameras), self.height, self.width) + ((3,) if self.rgb else ())
        layout = f"frames, cameras, height, width{', 3' if self.rgb else ''}"
        _check_uint8("images", images, shape, layout)
        last = self._last_frame_ns
        for t_s, t_ns in zip(times_s, ns, strict=True):
            if t_ns <= last:
                raise DojoConfigError(
                    f"t_s={t_s!r} must be later than the previous frame's "
                    f"{(last - self._start_ns) / 1e9!r} s."
                )
            last = t_ns
        first = self._frames
        with _GUARD, self._io():
            packets: list[list[tuple[int, bytes]]] = []
            for cam, encoder in enumerate(self._encoders):
                pending, out = self._pending[cam], []
                for i, t_ns in enumerate(ns):
                    pending[first + i] = t_ns
                    out += encoder.encode(images[i, cam], first + i, keyframe and i == 0)
                packets.append(out)
            for cam, out in enumerate(packets):
                for pts, data in out:
                    self._put_video(cam, pts, data)
            self._frames = first + len(ns)
            self._last_frame_ns = last

    def write_pose(self, t_s: float, x: float, y: float, z: float, yaw: float) -> None:
        """Ego pose in the world frame: position [m] and heading ``yaw`` [rad] about z."""
        self._check_open()
        ns = self._log_ns(t_s)
        px, py, pz = _finite("x", x), _finite("y", y), _finite("z", z)
        half = 0.5 * _finite("yaw", yaw)
        message = {
            "timestamp": _stamp(ns),
            "parent_frame_id": WORLD_FRAME,
            "child_frame_id": EGO_FRAME,
            "translation": {"x": px, "y": py, "z": pz},
            "rotation": {"x": 0.0, "y": 0.0, "z": math.sin(half), "w": math.cos(half)},
        }
        with _GUARD, self._io():
            self._put(POSE_TOPIC, ns, message)

    def write_telemetry(self, t_s: float, telemetry: Mapping[str, Any]) -> None:
        """Speed [m/s], acceleration [m/s^2], steering [rad], lane, TTC [s] and route command.

        ``ttc_s`` is None or infinite when nothing is closing in (logged as null); ``command``
        is a name, a number or an enum (logged by name). Extra keys are logged as they are.
        """
        self._check_open()
        ns = self._log_ns(t_s)
        if not isinstance(telemetry, Mapping):
            raise DojoConfigError(f"telemetry={telemetry!r} must be a dict.")
        missing = [k for k in TELEMETRY_FIELDS if k not in telemetry]
        if missing:
            raise DojoConfigError(f"telemetry misses {', '.join(missing)}.")
        message = self._extras("telemetry", telemetry, TELEMETRY_FIELDS)
        for key in ("speed_mps", "accel_mps2", "steer_rad"):
            message[key] = _finite(f"telemetry {key}", telemetry[key])
        lane = telemetry["lane"]
        if not isinstance(lane, (int, np.integer)) or isinstance(lane, (bool, np.bool_)):
            raise DojoConfigError(f"telemetry lane={lane!r} must be a whole number.")
        message["lane"] = int(lane)
        ttc = telemetry["ttc_s"]
        if ttc is not None:
            ttc = math.inf if _is_inf(ttc) else _finite("telemetry ttc_s", ttc)
            if ttc < 0:
                raise DojoConfigError(f"telemetry ttc_s={telemetry['ttc_s']!r} must be >= 0 s.")
        message["ttc_s"] = None if ttc is None or ttc == math.inf else ttc
        command = telemetry["command"]
        if not isinstance(command, (str, int, np.integer, Enum)) or isinstance(command, bool):
            raise DojoConfigError(
                f"telemetry command={command!r} must be a name, a number or an enum."
            )
        message["command"] = _json_data("telemetry command", command)
        with _GUARD, self._io():
            self._put(TELEMETRY_TOPIC, ns, message)

    def write_event(self, t_s: float, event: Mapping[str, Any]) -> None:
        """An event: ``kind`` (one of :data:`schemas.EVENT_KINDS`), ``critical`` (default
        False), ``reason`` (default ""), and any extra JSON fields."""
        self._check_open()
        ns = self._log_ns(t_s)
        if not isinstance(event, Mapping):
            raise DojoConfigError(f"event={event!r} must be a dict.")
        kind = event.get("kind")
        if kind not in schemas.EVENT_KINDS:
            raise DojoConfigError(
                f"event kind={kind!r} must be one of {', '.join(schemas.EVENT_KINDS)}."
            )
        critical = event.get("critical", False)
        if not isinstance(critical, (bool, np.bool_)):
            raise DojoConfigError(f"event critical={critical!r} must be True or False.")
        reason = event.get("reason", "")
        if not isinstance(reason, str):
            raise DojoConfigError(f"event reason={reason!r} must be a string.")
        message = self._extras("event", event, ("kind", "critical", "reason"))
        message.update(kind=kind, critical=bool(critical), reason=reason)
        with _GUARD, self._io():
            self._put(EVENTS_TOPIC, ns, message)
            self._events += 1
            self._critical += bool(critical)

    def write_occupancy(
        self, t_s: float, grid: np.ndarray, spec: OccupancySpec | None = None
    ) -> None:
        """Ground-truth occupancy: uint8 (rows, cols) classes laid out as ``spec`` says
        (:mod:`dojo.world.occupancy`; the default spec if None), logged as a foxglove.Grid in
        the ego frame."""
        self._check_open()
        ns = self._log_ns(t_s)
        spec = spec if spec is not None else OccupancySpec()
        shape = (spec.rows, spec.cols)
        _check_uint8("grid", grid, shape, "rows, cols of the spec")
        # grid x runs along the columns (ego -y), grid y along the rows (ego -x): a half turn
        # about the axis (1, -1, 0)/sqrt(2), with the corner of cell (0, 0) at the front left
        s = math.sqrt(0.5)
        message = {
            "timestamp": _stamp(ns),
            "frame_id": EGO_FRAME,
            "pose": {
                "position": {"x": spec.forward_m, "y": spec.side_m, "z": 0.0},
                "orientation": {"x": s, "y": -s, "z": 0.0, "w": 0.0},
            },
            "column_count": spec.cols,
            "cell_size": {"x": spec.cell_m, "y": spec.cell_m},
            "row_stride": spec.cols,
            "cell_stride": 1,
            "fields": [{"name": "class", "offset": 0, "type": schemas.NUMERIC_TYPE_UINT8}],
            "data": base64.b64encode(np.ascontiguousarray(grid).tobytes()).decode(),
        }
        with _GUARD, self._io():
            self._put(OCCUPANCY_TOPIC, ns, message)

    @staticmethod
    def _extras(what: str, values: Mapping[str, Any], known: Sequence[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in values.items():
            if key in known:
                continue
            if not isinstance(key, str) or key == "timestamp":
                raise DojoConfigError(f"{what} key {key!r} is reserved or not a string.")
            out[key] = _json_data(f"{what} {key}", value)
        return out

    # ------------------------------------------------------------------- close
    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Flush the encoders, write the summary and index, and move the file to its name.

        Idempotent: a second call does nothing.
        """
        self._close("complete")

    def _close(self, status: str) -> None:
        if self._closed:
            return
        with _GUARD, self._io():
            for cam, encoder in enumerate(self._encoders):
                for pts, data in encoder.flush():
                    self._put_video(cam, pts, data)
            self._writer.add_metadata("summary", self._summary(status))
            self._writer.finish()
            self._stream.flush()
            self._closed = True
            self._encoders = []
            if self._partial is not None and self.path is not None:
                os.fsync(self._stream.fileno())
                self._stream.close()
                os.replace(self._partial, self.path)

    def _summary(self, status: str) -> dict[str, str]:
        by_topic = {topic: self._counts[ch] for topic, ch in self._channels.items()}
        span = (self._last_ns - self._first_ns) / 1e9 if self._first_ns >= 0 else 0.0
        return {
            "status": status,
            "frames_per_camera": str(self._frames),
            "keyframes_per_camera": json.dumps(
                dict(zip(self.cameras, self._keyframes, strict=True))
            ),
            "events": str(self._events),
            "critical_events": str(self._critical),
            "duration_s": repr(span),
            "message_counts": json.dumps(by_topic),
        }

    def __enter__(self) -> DriveLogWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close("complete" if exc_type is None else f"interrupted: {exc_type.__name__}")


@dataclass(frozen=True)
class FrameCost:
    """Cost of logging camera frames, per camera frame (one image of one camera)."""

    camera_frames: int
    encode_ms: float  # PyAV/libx264 encode alone, the same settings and frames
    log_ms: float  # DriveLogWriter.write_frame for all, plus close: encode, JSON, MCAP, zstd
    bytes_per_frame: float  # size of the finished log / camera frames


def measure_frame_cost(
    images: np.ndarray, folder: str | os.PathLike[str], fps: float = 10.0, **options: Any
) -> FrameCost:
    """Time logging ``images`` (T, n_cams, H, W) or (T, n_cams, H, W, 3) uint8 in ``folder``.

    ``options`` go to :class:`DriveLogWriter` (crf, preset, ...). The log is deleted afterwards.
    """
    if not isinstance(images, np.ndarray) or images.ndim not in (4, 5) or len(images) == 0:
        raise DojoConfigError("images must be a non-empty uint8 array (T, n_cams, H, W[, 3]).")
    n, cams, h, w = images.shape[:4]
    rgb = images.ndim == 5
    names = [f"cam{i}" for i in range(cams)]
    path = Path(folder) / "frame_cost.mcap"
    writer = DriveLogWriter(path, names, w, h, fps, rgb=rgb, overwrite=True, **options)
    keyint, crf = writer.keyframe_interval, writer._crf
    preset = options.get("preset", "ultrafast")
    encoders = [_H264Encoder(w, h, writer.fps, keyint, crf, preset, rgb) for _ in names]
    start = time.perf_counter()
    for t in range(n):
        for cam, encoder in enumerate(encoders):
            encoder.encode(images[t, cam], t)
    for encoder in encoders:
        encoder.flush()
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    with writer:
        for t in range(n):
            writer.write_frame(t / writer.fps, images[t])
    log_s = time.perf_counter() - start
    size = path.stat().st_size
    path.unlink()
    frames = n * cams
    return FrameCost(frames, 1e3 * encode_s / frames, 1e3 * log_s / frames, size / frames)
