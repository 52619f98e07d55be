"""The writer's checks on what it is given, and its conversions to plain JSON data.

Every check raises :class:`~dojo.errors.ConfigError` with one sentence naming the value; numbers
and counts go through :mod:`dojo.validate`.
"""

from __future__ import annotations

import errno
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from enum import Enum
from pathlib import Path
from typing import IO, Any

import numpy as np

import dojo
from dojo.drivelog.format import PARTIAL_SUFFIX
from dojo.errors import ConfigError, StorageFullError
from dojo.validate import number, whole

DISK_FULL = {errno.ENOSPC, errno.EDQUOT}  # no space, or no quota left


def frame_size(name: str, value: object) -> int:
    """A frame width or height [px]: a positive even whole number (4:2:0 halves it)."""
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if not ok or int(value) <= 0 or int(value) % 2:  # type: ignore[call-overload]
        raise ConfigError(
            f"{name}={value!r} must be a positive even number of pixels (H.264 4:2:0 halves it)."
        )
    return int(value)  # type: ignore[call-overload]


def camera_names(cameras: Sequence[str]) -> tuple[str, ...]:
    if isinstance(cameras, str) or not cameras:
        raise ConfigError(f"cameras={cameras!r} must be a non-empty list of camera names.")
    names = tuple(cameras)
    for name in names:
        ok = isinstance(name, str) and name and all(c.isalnum() or c in "_-" for c in name)
        if not ok or not name.isascii():
            raise ConfigError(
                f"Camera name {name!r} must be ASCII letters, digits, '_' or '-' (it names a topic)."
            )
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"Camera names must be unique; repeated: {', '.join(dupes)}.")
    return names


def json_data(name: str, value: Any) -> Any:
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
        return number(name, value)
    if isinstance(value, np.ndarray):
        return json_data(name, value.tolist())
    if isinstance(value, (list, tuple)):
        return [json_data(f"{name}[{i}]", v) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise ConfigError(f"{name} has a key that is not a string: {list(value)!r}.")
        return {k: json_data(f"{name}.{k}", v) for k, v in value.items()}
    raise ConfigError(
        f"{name}={value!r} is not JSON data (numbers, strings, booleans, None, lists, dicts)."
    )


def metadata_strings(metadata: Mapping[str, object] | None) -> dict[str, str]:
    """MCAP metadata is a str -> str map: strings stay, anything else is stored as JSON."""
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, Mapping):
        raise ConfigError(f"metadata={metadata!r} must be a dict of config values.")
    out = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not key:
            raise ConfigError(f"metadata key {key!r} must be a non-empty string.")
        data = json_data(f"metadata[{key!r}]", value)
        out[key] = data if isinstance(data, str) else json.dumps(data, sort_keys=True)
    out.setdefault("software_version", dojo.__version__)
    return out


def is_inf(value: object) -> bool:
    return isinstance(value, (float, np.floating)) and value == math.inf


def check_uint8(name: str, value: object, shape: tuple[int, ...], layout: str) -> None:
    if not isinstance(value, np.ndarray) or value.dtype != np.uint8 or value.shape != shape:
        got = (
            f"{value.dtype} array of shape {value.shape}"
            if isinstance(value, np.ndarray)
            else type(value).__name__
        )
        raise ConfigError(f"{name} must be a uint8 array of shape {shape} ({layout}); got a {got}.")


def stamp(ns: int) -> dict[str, int]:
    return {"sec": ns // 1_000_000_000, "nsec": ns % 1_000_000_000}


def check_mounts(
    cameras: Sequence[str], mounts: Sequence[Sequence[float]] | None
) -> list[tuple[float, ...]]:
    """Each camera's (x_m, y_m, z_m, yaw_rad), checked; [] for no mounts."""
    return per_camera("camera_mounts", cameras, mounts, ("x_m", "y_m", "z_m", "yaw_rad"))


def check_intrinsics(
    cameras: Sequence[str], intrinsics: Sequence[Sequence[float]] | None
) -> list[tuple[float, ...]]:
    """Each camera's pinhole (focal_px, cx_px, cy_px), checked (focal > 0); [] for none."""
    out = per_camera("camera_intrinsics", cameras, intrinsics, ("focal_px", "cx_px", "cy_px"))
    for name, (f, _, _) in zip(cameras, out, strict=False):
        if f <= 0:
            raise ConfigError(f"camera_intrinsics for {name!r}: focal_px={f!r} must be > 0.")
    return out


def per_camera(
    option: str,
    cameras: Sequence[str],
    values: Sequence[Sequence[float]] | None,
    layout: tuple[str, ...],
) -> list[tuple[float, ...]]:
    """One tuple of finite numbers ``layout`` per camera, checked; [] for None."""
    if values is None:
        return []
    shape = f"({', '.join(layout)})"
    if isinstance(values, (str, bytes)) or len(values) != len(cameras):
        raise ConfigError(f"{option} must give {shape} for each of the {len(cameras)} cameras.")
    out = []
    for name, value in zip(cameras, values, strict=True):
        if isinstance(value, (str, bytes)) or len(value) != len(layout):
            raise ConfigError(f"{option} for {name!r} = {value!r} must be {shape}.")
        out.append(tuple(number(f"{option} {name}", v) for v in value))
    return out


def open_output(
    target: str | os.PathLike[str] | IO[bytes], overwrite: bool
) -> tuple[IO[bytes], Path | None, Path | None]:
    """The stream to write, its final path and its ``.partial`` path (None for a stream).

    A caller's stream is written in place (buffered here if raw); a path is checked (its folder
    exists, it is no folder, it does not exist unless ``overwrite``) and ``<name>.partial`` opened.
    """
    if not isinstance(target, (str, os.PathLike)):
        if not callable(getattr(target, "write", None)):
            raise ConfigError(f"path={target!r} must be a file path or a binary stream.")
        if isinstance(target, io.RawIOBase):  # buffer it here, so that close() can flush it
            return io.BufferedWriter(target), None, None
        return target, None, None
    path = Path(target)
    folder = path.parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise ConfigError(
            f"Output folder {folder} {what}; create it before writing drive log {path.name}."
        )
    if path.is_dir():
        raise ConfigError(f"Drive log path {path} is a folder; give a file name.")
    if path.exists() and not overwrite:
        raise ConfigError(
            f"Drive log {path} already exists; pass overwrite=True or choose another name."
        )
    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    try:
        stream = open(partial, "wb")  # noqa: SIM115 -- closed by close()
    except OSError as e:
        if e.errno in DISK_FULL:
            raise StorageFullError(
                f"The disk is full: cannot create {partial}.", path=str(partial)
            ) from e
        raise ConfigError(
            f"Output folder {folder} is not writable ({e.strerror}): cannot create {partial.name}."
        ) from e
    return stream, path, partial


__all__ = [
    "DISK_FULL",
    "camera_names",
    "check_intrinsics",
    "check_mounts",
    "check_uint8",
    "frame_size",
    "is_inf",
    "json_data",
    "metadata_strings",
    "number",
    "open_output",
    "stamp",
    "whole",
]
