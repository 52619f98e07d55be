"""What a camera rig can show: the visibility rule a careful driver and the auto-labeler obey.

**The rule.** An object is *visible* to a rig when

1. it is among the rig's ``max_vehicles`` objects nearest the ego (by the distance of its centre
   from the ego's centre; the renderer draws no others), and
2. in at least one camera ``c`` of the rig
   a. its footprint's nearest point lies within ``c.max_range_m`` of the camera (horizontal
      distance; the renderer draws no box that starts beyond it),
   b. its footprint's horizontal angular extent, seen from the camera, overlaps ``c``'s
      horizontal field of view, and
   c. its *pixel cover* in ``c`` is at least :data:`MIN_PIXELS`.

**Pixel cover** is the area [px] of the projected bounding box of the object's silhouette,
clipped to the image, in the camera's pinhole model (see :mod:`dojo.world.camera`):

* width: ``f * (tan(hi) - tan(lo))`` where ``[lo, hi]`` is the footprint's azimuth interval
  (from its four corners) clipped to ``[-hfov/2, hfov/2]``;
* height: from the row where the box stands on the ground, ``r0 + f * z_cam / depth_near``,
  up to its top, ``r0 - f * (height - z_cam) / depth`` (``depth_near`` for a box taller than the
  camera, the far corner's depth for a lower one, whose top face then shows), clipped to
  ``[0, H]``; ``r0 = horizon_row * H`` and ``depth`` is distance along the camera's axis.

For a box seen square on (a stalled car ahead) that is the pinhole formula
``(f * width / d) * (f * height / d)``; for an oblique box it is an upper bound of the pixels the
renderer paints (the bounding box of a hexagon). A rendered object's pixel count scatters around
it by the sub-pixel position of its edges; docs/rig.md compares the two.

**Occlusion is not modelled:** an object hidden behind a truck still counts as visible when the
rule holds. The rule depends only on ego-frame geometry, so it runs the same online (from a
:class:`~dojo.world.world.World`) and offline (from a logged scene, where the objects are the
scene's rows of one frame: pass every object the scene holds, at least the ``max_vehicles``
nearest, so rule 1 ranks them as the renderer did).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from dojo.errors import ConfigError
from dojo.world.camera import CameraRig, CameraSpec, ego_pose, in_ego_frame
from dojo.world.road import Roads
from dojo.world.vehicles import Vehicles

if TYPE_CHECKING:
    from dojo.world.world import World

MIN_PIXELS = 4.0  # [px] the least pixel cover a camera must give an object to show it
_NEAR_M = 0.05  # [m] depth floor: a box reaching behind the camera plane fills the image


def _arrays(
    x_m: np.ndarray,
    y_m: np.ndarray,
    yaw_rad: np.ndarray,
    length_m: np.ndarray,
    width_m: np.ndarray,
    height_m: np.ndarray,
) -> tuple[np.ndarray, ...]:
    arrays = np.broadcast_arrays(
        *(np.asarray(a, dtype=np.float64) for a in (x_m, y_m, yaw_rad, length_m, width_m, height_m))
    )
    for name, a in zip(
        ("x_m", "y_m", "yaw_rad", "length_m", "width_m", "height_m"), arrays, strict=True
    ):
        if not np.isfinite(a).all():
            raise ConfigError(f"Object geometry {name} holds a non-finite value.")
    for name, a in zip(("length_m", "width_m", "height_m"), arrays[3:], strict=True):
        if (a <= 0.0).any():
            raise ConfigError(f"Object geometry {name} must be > 0 m; got {a.min()!r}.")
    return tuple(arrays)


def _wrap(angle: np.ndarray) -> np.ndarray:
    """Angles [rad] wrapped into [-pi, pi) (a remainder: 4x faster than a complex exponential)."""
    return np.mod(angle + math.pi, 2.0 * math.pi) - math.pi


def _corners_min(a: np.ndarray) -> np.ndarray:
    """``a.min(axis=-1)`` of (..., 4) corners, pairwise: numpy's reduce over a last axis of 4
    costs 25 times as much."""
    return np.minimum(np.minimum(a[..., 0], a[..., 1]), np.minimum(a[..., 2], a[..., 3]))


def _corners_max(a: np.ndarray) -> np.ndarray:
    return np.maximum(np.maximum(a[..., 0], a[..., 1]), np.maximum(a[..., 2], a[..., 3]))


def pixel_cover(
    rig: CameraRig,
    x_m: np.ndarray,
    y_m: np.ndarray,
    yaw_rad: np.ndarray,
    length_m: np.ndarray,
    width_m: np.ndarray,
    height_m: np.ndarray,
) -> np.ndarray:
    """Pixel cover [px] of each object in each camera of ``rig``: shape ``(..., C)``.

    Objects are upright boxes in the ego frame (x forward, y left, from the ego's centre on the
    ground; ``yaw_rad`` relative to the ego's heading; ``length_m`` along the object's heading),
    arrays of any one shape ``(...)``. 0 where the object is outside a camera's field of view or
    beyond its ``max_range_m`` (rules 2a-2c of the module docstring, before the threshold).
    """
    x, y, yaw, length, width, height = _arrays(x_m, y_m, yaw_rad, length_m, width_m, height_m)
    shape = x.shape
    x, y, yaw, length, width, height = (a.ravel() for a in (x, y, yaw, length, width, height))
    radius = 0.5 * np.hypot(length, width)  # every footprint point lies within it of the centre
    out = np.zeros((x.size, len(rig.cameras)))
    for c, cam in enumerate(rig.cameras):
        cy, sy = math.cos(math.radians(cam.yaw_deg)), math.sin(math.radians(cam.yaw_deg))
        rx, ry = x - cam.x_m, y - cam.y_m
        fwd, left = cy * rx + sy * ry, -sy * rx + cy * ry  # centre in the camera frame
        # Only boxes that may reach into the camera's range and field of view are projected
        # (the rest would come out 0 anyway): the centre's distance less the radius, and its
        # azimuth less the angle the radius subtends (all directions from inside the disk),
        # with a margin so rounding never drops a box the full projection would keep.
        d = np.hypot(fwd, left)
        subtends = np.where(
            d > radius, np.arcsin(np.minimum(radius / np.maximum(d, 1e-9), 1.0)), math.pi
        )
        half = math.radians(0.5 * cam.hfov_deg)
        centre = np.arctan2(left, fwd)  # the centre's azimuth, left +
        maybe = (d - radius <= cam.max_range_m + 1e-6) & (np.abs(centre) - subtends <= half + 1e-6)
        i = np.flatnonzero(maybe)
        out[i, c] = _camera_cover(
            cam, fwd[i], left[i], centre[i], yaw[i], 0.5 * length[i], 0.5 * width[i], height[i]
        )
    return out.reshape(shape + (len(rig.cameras),))


def _camera_cover(
    cam: CameraSpec,
    fwd: np.ndarray,
    left: np.ndarray,
    centre: np.ndarray,
    yaw: np.ndarray,
    hl: np.ndarray,
    hw: np.ndarray,
    height: np.ndarray,
) -> np.ndarray:
    """Pixel cover [px] in ``cam`` of boxes (N,) centred at (``fwd``, ``left``) in its frame (at
    azimuth ``centre``), of half-length ``hl`` and half-width ``hw``, heading ``yaw`` relative to
    the ego's."""
    corner_l = np.array([1.0, 1.0, -1.0, -1.0])  # the footprint's corners, (4,)
    corner_w = np.array([1.0, -1.0, -1.0, 1.0])
    rel = yaw - math.radians(cam.yaw_deg)
    cr, sr = np.cos(rel)[..., None], np.sin(rel)[..., None]
    ax, ay = hl[..., None] * corner_l, hw[..., None] * corner_w  # (N, 4) box frame
    cf = fwd[..., None] + cr * ax - sr * ay  # corners in the camera frame
    cl = left[..., None] + sr * ax + cr * ay
    # nearest footprint point to the camera: the camera's position in the box frame
    ox, oy = cr[..., 0] * -fwd + sr[..., 0] * -left, -sr[..., 0] * -fwd + cr[..., 0] * -left
    dist = np.hypot(np.maximum(np.abs(ox) - hl, 0.0), np.maximum(np.abs(oy) - hw, 0.0))
    inside = dist == 0.0  # the camera sits in the box: it fills the image
    # azimuths (left +) of the corners, unwrapped about the centre's so a box behind works
    delta = _wrap(np.arctan2(cl, cf) - centre[..., None])
    half = math.radians(0.5 * cam.hfov_deg)
    lo = np.maximum(centre + _corners_min(delta), -half)
    hi = np.minimum(centre + _corners_max(delta), half)
    f, h_px = cam.focal_px, float(cam.height_px)
    width_px = np.where(hi > lo, f * (np.tan(np.maximum(hi, lo)) - np.tan(lo)), 0.0)
    near = np.maximum(_corners_min(cf), _NEAR_M)
    far = np.maximum(_corners_max(cf), _NEAR_M)
    r0, z = cam.horizon_row * h_px, cam.z_m
    bottom = np.clip(r0 + f * z / near, 0.0, h_px)
    top = np.clip(r0 - f * (height - z) / np.where(height >= z, near, far), 0.0, h_px)
    cover = width_px * np.maximum(bottom - top, 0.0)
    cover = np.where(inside, float(cam.width_px) * h_px, cover)
    return np.where(dist <= cam.max_range_m, cover, 0.0)


def nearest_drawn(
    rig: CameraRig, x_m: np.ndarray, y_m: np.ndarray, active: np.ndarray
) -> np.ndarray:
    """Rule 1: whether each of objects ``(..., N)`` is among the rig's ``max_vehicles`` active
    objects nearest the ego's centre (ties go to the lower index, as the renderer breaks them)."""
    x, y = np.asarray(x_m, dtype=np.float64), np.asarray(y_m, dtype=np.float64)
    dist2 = np.where(active, x**2 + y**2, np.inf)
    order = np.argsort(dist2, axis=-1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(order.shape[-1]), axis=-1)
    return np.asarray(active, dtype=bool) & (rank < rig.max_vehicles)


def visible(
    rig: CameraRig,
    x_m: np.ndarray,
    y_m: np.ndarray,
    yaw_rad: np.ndarray,
    length_m: np.ndarray,
    width_m: np.ndarray,
    height_m: np.ndarray,
    active: np.ndarray | None = None,
) -> np.ndarray:
    """The visibility rule (module docstring) for objects ``(..., N)``: bool ``(..., N)``.

    Geometry as in :func:`pixel_cover`; the last axis holds one frame's objects (the ego not
    among them), which rule 1 ranks against each other. ``active``: which entries are objects
    (default all); inactive entries are never visible and never rank.
    """
    x, y, yaw, length, width, height = _arrays(x_m, y_m, yaw_rad, length_m, width_m, height_m)
    act = np.ones(x.shape, dtype=bool) if active is None else np.asarray(active, bool)
    if act.shape != x.shape:
        raise ConfigError(f"active has shape {act.shape}; the objects have {x.shape}.")
    # only objects rule 1 keeps and some camera could reach are projected: pixel_cover is the
    # costly part
    drawn = nearest_drawn(rig, x, y, act)
    reach = max(math.hypot(c.x_m, c.y_m) + c.max_range_m for c in rig.cameras)
    near = drawn & (np.hypot(x, y) - 0.5 * np.hypot(length, width) <= reach)
    shown = np.zeros(x.shape, dtype=bool)
    cover = pixel_cover(rig, x[near], y[near], yaw[near], length[near], width[near], height[near])
    shown[near] = (cover >= MIN_PIXELS).any(axis=-1)
    return shown


def visible_objects(world: World | tuple[Roads, Vehicles], rig: CameraRig) -> np.ndarray:
    """(W, V) bool: which vehicle slots of every world the rig shows its ego (slot 0: False)."""
    roads, veh = (world.roads, world.vehicles) if not isinstance(world, tuple) else world
    w = np.arange(veh.shape[0])
    x, y, yaw = in_ego_frame(roads, veh, w, ego_pose(roads, veh, w))  # (W, V)
    others = slice(1, None)
    out = np.zeros(veh.shape, dtype=bool)
    out[:, others] = visible(
        rig,
        x[:, others],
        y[:, others],
        yaw[:, others],
        veh.length[:, others],
        veh.width[:, others],
        veh.height[:, others],
        veh.active[:, others],
    )
    return out


__all__ = ["MIN_PIXELS", "nearest_drawn", "pixel_cover", "visible", "visible_objects"]
