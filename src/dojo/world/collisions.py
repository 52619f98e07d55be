"""Collisions between oriented boxes (separating-axis test) and leaving the road.

Only a vehicle and its leader closer than CONTACT_GAP_M are tested exactly, so the exact test
runs on a handful of pairs per step whatever the batch size.
"""

from __future__ import annotations

import numpy as np

from dojo.world.road import Roads
from dojo.world.vehicles import Vehicles


def box_corners(
    x: np.ndarray, y: np.ndarray, yaw: np.ndarray, length: np.ndarray, width: np.ndarray
) -> np.ndarray:
    """(..., 4, 2) corners of boxes centred at (x, y) [m] with heading yaw [rad]."""
    c, s = np.cos(yaw), np.sin(yaw)
    hl, hw = 0.5 * length, 0.5 * width
    local = np.array([[1, 1], [1, -1], [-1, -1], [-1, 1]], dtype=np.float64)  # (4, 2) signs
    lx = local[:, 0] * hl[..., None]
    ly = local[:, 1] * hw[..., None]
    cx = x[..., None] + lx * c[..., None] - ly * s[..., None]
    cy = y[..., None] + lx * s[..., None] + ly * c[..., None]
    return np.stack([cx, cy], axis=-1)


def boxes_overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether convex quads a and b (..., 4, 2) intersect: no separating axis among their edge normals."""
    edges = np.concatenate([np.roll(a, -1, axis=-2) - a, np.roll(b, -1, axis=-2) - b], axis=-2)
    axes = np.stack([-edges[..., 1], edges[..., 0]], axis=-1)  # (..., 8, 2) normals
    pa = np.einsum("...kc,...ac->...ak", a, axes)  # (..., 8 axes, 4 corners)
    pb = np.einsum("...kc,...ac->...ak", b, axes)
    separated = (pa.max(-1) < pb.min(-1)) | (pb.max(-1) < pa.min(-1))
    return ~separated.any(-1)


def vehicle_pose_xy(
    roads: Roads, veh: Vehicles, w: np.ndarray, i: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World x, y [m] and yaw [rad] of vehicles (w, i)."""
    x, y, heading = roads.to_xy(veh.s[w, i], veh.d[w, i], w)
    return x, y, heading + veh.psi[w, i]


CONTACT_GAP_M = 0.5  # pairs closer than this along the lane get the exact box test


def collisions(roads: Roads, veh: Vehicles, leader: np.ndarray, gap_m: np.ndarray) -> np.ndarray:
    """(W, V) bool: the vehicle's box intersects another active box this step.

    Two bodies can only touch if one is in the other's path (lateral overlap) with a gap near or
    below zero, so the exact test runs only on (vehicle, leader) pairs with a small gap.
    """
    w, i = np.nonzero(veh.active & (gap_m < CONTACT_GAP_M))
    hit = np.zeros(veh.shape, dtype=bool)
    if len(w) == 0:
        return hit
    j = leader[w, i]
    xi, yi, ai = vehicle_pose_xy(roads, veh, w, i)
    xj, yj, aj = vehicle_pose_xy(roads, veh, w, j)
    ok = boxes_overlap(
        box_corners(xi, yi, ai, veh.length[w, i], veh.width[w, i]),
        box_corners(xj, yj, aj, veh.length[w, j], veh.width[w, j]),
    )
    hit[w[ok], i[ok]] = True
    hit[w[ok], j[ok]] = True
    return hit


def off_road(roads: Roads, veh: Vehicles) -> np.ndarray:
    """(W, V) bool: a driven vehicle's centre has left every open lane."""
    return veh.active & veh.driven & ~roads.on_road(veh.s, veh.d, slice(None))
