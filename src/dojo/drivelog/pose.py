"""Poses in drive logs: quaternions (x, y, z, w) for headings, camera mounts and back to yaw.

The writer turns a heading into a quaternion about z (:func:`yaw_rotation`); the decoder turns
it back (:func:`yaw_of`), so a pose read from a log is the one written, to rounding.
"""

from __future__ import annotations

import math

from dojo.world.camera import CameraRig


def yaw_rotation(half_yaw_rad: float) -> tuple[float, float, float, float]:
    """Quaternion (x, y, z, w) of a turn about z by twice ``half_yaw_rad`` (half the heading)."""
    return (0.0, 0.0, math.sin(half_yaw_rad), math.cos(half_yaw_rad))


def yaw_of(qz: float, qw: float) -> float:
    """Heading [rad] in [-pi, pi] of a quaternion turning about z only (its z and w parts)."""
    return math.remainder(2.0 * math.atan2(qz, qw), 2 * math.pi)


def optical_rotation(yaw_rad: float) -> tuple[float, float, float, float]:
    """Quaternion (x, y, z, w) of a level camera's optical frame in the ego frame.

    Optical axes (+z forward, +x right, +y down) seen from the ego frame (x forward, y left,
    z up) for a camera looking straight ahead: z -> (1, 0, 0), x -> (0, -1, 0), y -> (0, 0, -1),
    the quaternion (-1/2, 1/2, -1/2, 1/2); a camera turned ``yaw_rad`` left adds that turn
    about the ego's z axis.
    """
    return _quaternion_product(yaw_rotation(0.5 * yaw_rad), (-0.5, 0.5, -0.5, 0.5))


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


def camera_intrinsics(rig: CameraRig) -> list[tuple[float, float, float]]:
    """(focal_px, cx_px, cy_px) of each camera of a rig: its pinhole's K, pixel centres whole.

    :mod:`dojo.world.camera` casts column u's ray through ``u + 0.5 - width/2`` focal lengths
    right and row v's through ``horizon_row*height - (v + 0.5)`` up; in the convention of
    OpenCV and foxglove.CameraCalibration (pixel (0, 0)'s centre at 0) that puts the principal
    point at ``(width/2 - 0.5, horizon_row*height - 0.5)``.
    """
    return [
        (c.focal_px, 0.5 * c.width_px - 0.5, c.horizon_row * c.height_px - 0.5) for c in rig.cameras
    ]


__all__ = ["camera_intrinsics", "camera_mounts", "optical_rotation", "yaw_of", "yaw_rotation"]
