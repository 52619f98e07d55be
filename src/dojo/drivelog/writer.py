"""Writing drive logs: :class:`DriveLogWriter` (format in :mod:`dojo.drivelog`)."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from types import TracebackType
from typing import IO, Any

import numpy as np
from mcap.writer import CompressionType, Writer

import dojo
from dojo.drivelog import schemas
from dojo.drivelog.checks import (
    DISK_FULL,
    camera_names,
    check_intrinsics,
    check_mounts,
    check_uint8,
    frame_size,
    metadata_strings,
    number,
    open_output,
    whole,
)
from dojo.drivelog.format import (
    CALIBRATION_TOPIC,
    CAMERA_FRAME,
    CAMERA_MOUNTS_TOPIC,
    CAMERA_TOPIC,
    EVENTS_TOPIC,
    OCCUPANCY_TOPIC,
    POSE_TOPIC,
    SCENE_TOPIC,
    TELEMETRY_TOPIC,
)
from dojo.drivelog.messages import (
    event_message,
    grid_message,
    mount_message,
    pose_message,
    telemetry_message,
)
from dojo.drivelog.pose import camera_intrinsics, camera_mounts
from dojo.drivelog.scene import calibration_message, scene_message
from dojo.drivelog.sigint import GUARD
from dojo.drivelog.video import DEFAULT_CRF, VIDEO_FORMAT, X264_PRESETS, _H264Encoder, is_keyframe
from dojo.errors import ConfigError, StorageFullError
from dojo.world.camera import CameraRig
from dojo.world.occupancy import OccupancySpec
from dojo.world.scene import SceneObjects


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
    ``camera_mounts``: each camera's (x_m, y_m, z_m, yaw_rad) in the ego frame, logged once on
    ``/camera_mounts``. ``camera_intrinsics``: each camera's pinhole (focal_px, cx_px, cy_px),
    logged as a foxglove.CameraCalibration on ``/camera/<name>/calibration`` at t = 0 and again
    at each of the camera's keyframes, so a window cut from the log still has it.
    :meth:`from_rig` fills both from a camera rig.

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
        camera_intrinsics: Sequence[Sequence[float]] | None = None,
    ) -> None:
        self._closed = True  # until the file is open: a failed __init__ leaves nothing to close
        self.cameras = camera_names(cameras)
        self.width, self.height = frame_size("width", width), frame_size("height", height)
        self.fps = number("fps", fps)
        interval = number("keyframe_interval_s", keyframe_interval_s)
        if self.fps <= 0 or interval <= 0:
            bad = ("fps", fps) if self.fps <= 0 else ("keyframe_interval_s", keyframe_interval_s)
            raise ConfigError(f"{bad[0]}={bad[1]!r} must be > 0.")
        self.keyframe_interval = round(interval * self.fps)  # [frames]
        if self.keyframe_interval < 1:
            raise ConfigError(
                f"keyframe_interval_s={keyframe_interval_s!r} is under one frame at fps={fps!r}."
            )
        self.rgb = bool(rgb)
        self._crf = whole("crf", crf, 1, 51)
        if preset not in X264_PRESETS:
            raise ConfigError(f"preset={preset!r} must be one of {', '.join(X264_PRESETS)}.")
        chunk = whole("chunk_size_bytes", chunk_size_bytes, 1024)
        self._start_ns = whole("start_time_ns", start_time_ns, 0)
        drive_meta = metadata_strings(metadata)
        self._encoders = [
            _H264Encoder(
                self.width, self.height, self.fps, self.keyframe_interval, self._crf, preset, rgb
            )
            for _ in self.cameras
        ]
        self._frames, self._keyframes = 0, [0] * len(self.cameras)
        self._frame_ids = [json.dumps(CAMERA_FRAME.format(name)) for name in self.cameras]
        mounts = check_mounts(self.cameras, camera_mounts)
        # each camera's calibration message, its timestamp left as a %s slot
        self._calibrations = [
            json.dumps(
                calibration_message(0, CAMERA_FRAME.format(name), self.width, self.height, k),
                separators=(",", ":"),
            ).replace('{"sec":0,"nsec":0}', "%s", 1)
            for name, k in zip(
                self.cameras, check_intrinsics(self.cameras, camera_intrinsics), strict=False
            )
        ]
        self._last_frame_ns = -1
        self._last_scene_ns = -1
        self._pending: list[dict[int, int]] = [{} for _ in self.cameras]  # pts -> log time [ns]
        self._events, self._critical = 0, 0
        self._first_ns, self._last_ns = -1, -1
        self._failure = ""
        try:
            with GUARD:
                self._stream, self.path, self._partial = open_output(path, overwrite)
                self.name = str(self.path) if self.path else str(getattr(path, "name", "<stream>"))
                self._closed = False
                with self._io():
                    self._writer = Writer(
                        self._stream, chunk_size=chunk, compression=CompressionType.ZSTD
                    )
                    self._writer.start(profile="", library=f"dojo/{dojo.__version__}")
                    self._channels = schemas.register_channels(
                        self._writer, self.cameras, self.width, self.height, self.rgb
                    )
                    self._counts = dict.fromkeys(self._channels.values(), 0)
                    if mounts:
                        self._write_mounts(mounts)
                    for cam in range(len(self._calibrations)):
                        self._put_calibration(cam, self._start_ns)
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
        options.setdefault("camera_intrinsics", camera_intrinsics(rig))
        return cls(path, rig.names, cam.width_px, cam.height_px, rgb=rig.rgb, **options)

    def _write_mounts(self, mounts: list[tuple[float, ...]]) -> None:
        """Static ego -> camera transforms (Foxglove's 3D panel places the cameras with them)."""
        for name, (x, y, z, yaw) in zip(self.cameras, mounts, strict=True):
            message = mount_message(self._start_ns, name, (x, y, z, yaw))
            self._put(CAMERA_MOUNTS_TOPIC, self._start_ns, message)

    # ------------------------------------------------------------------ setup
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
        """Turn a full disk into a StorageFullError; any failed write leaves the writer closed."""
        try:
            yield
        except OSError as e:
            self._abort()
            if e.errno in DISK_FULL:
                self._failure = "the disk was full"
                left = "the partial file was removed" if self._partial else "the stream is unusable"
                raise StorageFullError(
                    f"The disk is full: drive log {self.name} could not be written "
                    f"({e.strerror}); {left}, logs closed before it are untouched.",
                    path=self.name,
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
            raise ConfigError(
                f"Drive log {self.name} was closed{why}; nothing more can be written."
            )

    def _log_ns(self, t_s: float) -> int:
        t = number("t_s", t_s)
        if t < 0:
            raise ConfigError(f"t_s={t_s!r} must be >= 0 s (time since the drive began).")
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

    def _put_calibration(self, cam: int, ns: int) -> None:
        sec, nsec = divmod(ns, 1_000_000_000)
        message = self._calibrations[cam] % f'{{"sec":{sec},"nsec":{nsec}}}'
        self._put_bytes(CALIBRATION_TOPIC.format(self.cameras[cam]), ns, message.encode())

    def _put_video(self, cam: int, pts: int, data: bytes) -> None:
        ns = self._pending[cam].pop(pts)
        key = is_keyframe(data)
        self._keyframes[cam] += key
        if key and self._calibrations and ns > self._start_ns:  # t = 0 has it already
            self._put_calibration(cam, ns)
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
        check_uint8("images", images, shape, f"cameras, height, width{', 3' if self.rgb else ''}")
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
        check_uint8("images", images, shape, layout)
        last = self._last_frame_ns
        for t_s, t_ns in zip(times_s, ns, strict=True):
            if t_ns <= last:
                raise ConfigError(
                    f"t_s={t_s!r} must be later than the previous frame's "
                    f"{(last - self._start_ns) / 1e9!r} s."
                )
            last = t_ns
        first = self._frames
        with GUARD, self._io():
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
        message = pose_message(ns, x, y, z, yaw)
        with GUARD, self._io():
            self._put(POSE_TOPIC, ns, message)

    def write_telemetry(self, t_s: float, telemetry: Mapping[str, Any]) -> None:
        """Speed [m/s], acceleration [m/s^2], steering [rad], lane, TTC [s] and route command.

        ``ttc_s`` is None or infinite when nothing is closing in (logged as null); ``command``
        is a name, a number or an enum (logged by name). Extra keys are logged as they are.
        """
        self._check_open()
        ns = self._log_ns(t_s)
        message = telemetry_message(telemetry)
        with GUARD, self._io():
            self._put(TELEMETRY_TOPIC, ns, message)

    def write_event(self, t_s: float, event: Mapping[str, Any]) -> None:
        """An event: ``kind`` (one of :data:`schemas.EVENT_KINDS`), ``critical`` (default
        False), ``reason`` (default ""), and any extra JSON fields."""
        self._check_open()
        ns = self._log_ns(t_s)
        message = event_message(event)
        critical = message["critical"]
        with GUARD, self._io():
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
        message = grid_message(ns, grid, spec)
        with GUARD, self._io():
            self._put(OCCUPANCY_TOPIC, ns, message)

    def write_scene(self, t_s: float, objects: SceneObjects) -> None:
        """Every object around the ego at drive time ``t_s`` (:class:`~dojo.world.scene.SceneObjects`,
        the ego included), logged on ``/scene`` as one foxglove.SceneUpdate in the world frame
        (see :mod:`dojo.drivelog.scene`); ``t_s`` later than the previous scene's."""
        self._check_open()
        ns = self._log_ns(t_s)
        if ns <= self._last_scene_ns:
            raise ConfigError(
                f"t_s={t_s!r} must be later than the previous scene's "
                f"{(self._last_scene_ns - self._start_ns) / 1e9!r} s."
            )
        data = scene_message(ns, objects)
        with GUARD, self._io():
            self._put_bytes(SCENE_TOPIC, ns, data)
            self._last_scene_ns = ns

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
        with GUARD, self._io():
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


__all__ = ["DriveLogWriter"]
