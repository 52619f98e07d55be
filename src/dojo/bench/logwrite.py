"""What logging camera frames costs: encode alone against the whole drive-log writer."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dojo.drivelog.video import _H264Encoder
from dojo.drivelog.writer import DriveLogWriter
from dojo.errors import ConfigError


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
        raise ConfigError("images must be a non-empty uint8 array (T, n_cams, H, W[, 3]).")
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


__all__ = ["FrameCost", "measure_frame_cost"]
