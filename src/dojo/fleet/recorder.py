"""What a car uploads: its drive log, with every frame or only the windows around its triggers.

Telemetry, the ego pose, the scene (every object around the ego) and events are small and
always logged. Camera frames and occupancy labels are logged for every step (``full``), or
(``triggers``) only inside upload windows:
``window_before_s`` before an event to ``window_after_s`` after it, plus sampled slots of
normal driving. In trigger-only mode the car keeps the last ``window_before_s`` of frames in a
ring buffer, so a window can reach back in time; each window starts with a keyframe, so it
decodes on its own. With ``full`` logging, frames are held for up to one keyframe interval and
written together (:meth:`DriveLogWriter.write_frames`), which keeps each camera's encoder warm;
closing the recorder writes whatever is held, so an interrupted drive loses nothing.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from dojo.drivelog import DriveLogWriter
from dojo.fleet.config import TriggerConfig
from dojo.world.occupancy import OccupancySpec

_EPS_S = 1e-6


class CarRecorder:
    """The drive log of one car's current drive, and its upload windows."""

    def __init__(
        self,
        path: Path,
        writer_options: dict[str, Any],
        metadata: dict[str, Any],
        triggers: TriggerConfig,
        full: bool,
        image_shape: tuple[int, ...],
        grid_shape: tuple[int, int],
        label_every: int,
        fps: float,
    ) -> None:
        self.writer = DriveLogWriter(path, metadata=metadata, **writer_options)
        self.path = path
        self.full, self.triggers, self.label_every = full, triggers, label_every
        self.upload_until_s = -np.inf
        self.last_written_s = -np.inf
        self.frames_written = 0
        self.video_s = 0.0  # wall time in write_frame: H.264 encoding and the video records [s]
        batch = self.writer.keyframe_interval
        size = batch if full else int(round(triggers.window_before_s * fps)) + 1
        self._images = np.zeros((size, *image_shape), dtype=np.uint8)
        self._grids = np.zeros((size, *grid_shape), dtype=np.uint8)
        self._times = np.full(size, -np.inf)  # drive time of each buffered frame [s]; -inf: empty
        self._labelled = np.zeros(size, dtype=bool)
        self._next = 0
        self._spec: OccupancySpec | None = None
        self._window_start_s = -np.inf

    def open_window(self, t_s: float, seconds_after: float) -> None:
        """Upload from ``window_before_s`` before ``t_s`` to ``seconds_after`` after it."""
        self.upload_until_s = max(self.upload_until_s, t_s + seconds_after)
        self._window_start_s = t_s - self.triggers.window_before_s

    def record_frame(
        self, t_s: float, images: np.ndarray, grid: np.ndarray | None, spec: OccupancySpec
    ) -> None:
        """The camera images (and label grid) of drive time ``t_s``: logged now or buffered."""
        if self.full:
            i = self._next
            self._images[i], self._times[i], self._labelled[i] = images, t_s, grid is not None
            if grid is not None:
                self._grids[i] = grid
            self._next = i + 1
            self._spec = spec
            if self._next == len(self._times):
                self._write_held()
            return
        if t_s <= self.upload_until_s + _EPS_S:
            self._flush_buffer(t_s, spec)
            self._write(t_s, images, grid, spec, keyframe=self._gap_before(t_s))
            return
        if len(self._times):
            i = self._next
            self._images[i] = images
            self._labelled[i] = grid is not None
            if grid is not None:
                self._grids[i] = grid
            self._times[i] = t_s
            self._next = (i + 1) % len(self._times)

    def _flush_buffer(self, t_s: float, spec: OccupancySpec) -> None:
        times = self._times
        take = (
            (times >= self._window_start_s - _EPS_S)
            & (times < t_s - _EPS_S)
            & (times > self.last_written_s + _EPS_S)
        )
        first = True
        for i in np.nonzero(take)[0][np.argsort(times[take])]:
            grid = self._grids[i] if self._labelled[i] else None
            self._write(
                float(times[i]),
                self._images[i],
                grid,
                spec,
                keyframe=first and self._gap_before(float(times[i])),
            )
            first = False
        self._times[take] = -np.inf

    def _write_held(self) -> None:
        """Write the frames held in ``full`` mode, in one batch, and their labels."""
        n, self._next = self._next, 0
        if n == 0:
            return
        times = [float(t) for t in self._times[:n]]
        tick = time.perf_counter()
        self.writer.write_frames(times, self._images[:n])
        self.video_s += time.perf_counter() - tick
        for i in np.nonzero(self._labelled[:n])[0]:
            assert self._spec is not None  # set with every labelled frame
            self.writer.write_occupancy(times[i], self._grids[i], self._spec)
        self.last_written_s = times[-1]
        self.frames_written += n

    def _write(
        self,
        t_s: float,
        images: np.ndarray,
        grid: np.ndarray | None,
        spec: OccupancySpec,
        keyframe: bool,
    ) -> None:
        tick = time.perf_counter()
        self.writer.write_frame(t_s, images, keyframe=keyframe)
        self.video_s += time.perf_counter() - tick
        if grid is not None:
            self.writer.write_occupancy(t_s, grid, spec)
        self.last_written_s = t_s
        self.frames_written += 1

    def _gap_before(self, t_s: float) -> bool:
        """Frames before ``t_s`` were skipped: start a new group of pictures there."""
        return bool(self.last_written_s < t_s - 1.5 / self.writer.fps)

    def close(self, error: BaseException | None = None) -> None:
        """Write the held frames, then close the log (as interrupted or failed with ``error``)."""
        failed: BaseException | None = None
        if self.full and not self.writer.closed:
            try:
                self._write_held()
            except BaseException as e:  # the log still closes, marked with this error
                failed = e
        cause = error or failed
        if cause is None:
            self.writer.close()
        else:
            self.writer.__exit__(type(cause), cause, cause.__traceback__)
        if failed is not None and error is None:
            raise failed
