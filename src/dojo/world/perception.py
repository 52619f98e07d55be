"""Who is ahead of whom: leaders, gaps, closing speeds and time-to-collision for every vehicle.

Computed for all pairs of a world at once ((W, V, V) arrays): with a few dozen vehicles per world
this is cheaper in numpy than sorting, and it needs no lane bookkeeping: a vehicle is in another's
path when their bodies overlap laterally, or when it signals a change into that lane.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dojo.world.road import Roads
from dojo.world.vehicles import Vehicles

INF = np.inf


@dataclass
class Pairwise:
    """Relations between every pair (i, j) of a world; arrays (W, V, V) unless noted."""

    ds: np.ndarray  # [m] s_j - s_i wrapped to [-L/2, L/2)
    lane: np.ndarray  # (W, V) nearest lane of each vehicle
    gap_scale: np.ndarray  # (W, V) metres along the lane per metre of s at each vehicle


@dataclass
class Perception:
    """What every vehicle sees ahead of it; arrays (W, V)."""

    leader: np.ndarray  # int index of the leader (== own index when none)
    gap_m: np.ndarray  # bumper-to-bumper gap to the leader [m] (inf when none)
    closing_mps: np.ndarray  # v - v_leader [m/s] (0 when none)
    ttc_s: np.ndarray  # gap / closing when closing > 0, else inf [s]
    pairs: Pairwise


def pairwise(roads: Roads, veh: Vehicles) -> Pairwise:
    length = roads.length[:, None, None]
    ds = veh.s[:, None, :] - veh.s[:, :, None]
    ds = ds - length * np.floor(ds / length + 0.5)
    kappa = roads.curvature(veh.s, np.arange(len(roads.lanes))[:, None])
    gap_scale = np.maximum(1.0 - kappa * veh.d, 0.05)
    return Pairwise(ds=ds, lane=roads.lane_of(veh.d, slice(None)), gap_scale=gap_scale)


def gap_matrix(p: Pairwise, veh: Vehicles) -> np.ndarray:
    """(W, V, V) bumper-to-bumper gap [m] from i to j along i's lane (negative when j is behind)."""
    half = 0.5 * veh.length
    return p.ds * p.gap_scale[:, :, None] - (half[:, :, None] + half[:, None, :]) * np.sign(p.ds)


def in_path(p: Pairwise, veh: Vehicles) -> np.ndarray:
    """(W, V, V) whether j is in i's path: bodies overlap laterally, or j is changing into i's lane."""
    half_w = 0.5 * veh.width
    overlap = np.abs(veh.d[:, None, :] - veh.d[:, :, None]) < half_w[:, :, None] + half_w[:, None, :]
    changing = veh.target_lane != p.lane
    signalled = changing[:, None, :] & (veh.target_lane[:, None, :] == p.lane[:, :, None])
    valid = veh.active[:, None, :] & veh.active[:, :, None]
    eye = np.eye(veh.shape[1], dtype=bool)[None]
    return (overlap | signalled) & valid & ~eye


def perceive(roads: Roads, veh: Vehicles) -> Perception:
    p = pairwise(roads, veh)
    gaps = gap_matrix(p, veh)
    ahead = in_path(p, veh) & (p.ds > 0.0)
    masked = np.where(ahead, gaps, INF)
    leader = np.argmin(masked, axis=2)
    gap = np.take_along_axis(masked, leader[:, :, None], axis=2)[:, :, 0]
    has = np.isfinite(gap)
    v_lead = np.take_along_axis(veh.v, leader, axis=1)
    closing = np.where(has, veh.v - v_lead, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ttc = np.where(has & (closing > 1e-6), np.maximum(gap, 0.0) / closing, INF)
    own = np.broadcast_to(np.arange(veh.shape[1]), leader.shape)
    return Perception(
        leader=np.where(has, leader, own), gap_m=gap, closing_mps=closing, ttc_s=ttc, pairs=p
    )
