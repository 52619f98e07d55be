"""Human driver models: IDM car following, MOBIL lane changes, and a lane-tracking controller.

IDM (Treiber, Hennecke & Helbing 2000):
    a = a_max * (1 - (v / v0)^delta - (s_star / gap)^2)
    s_star = s0 + max(0, v T + v dv / (2 sqrt(a_max b)))      dv = v - v_leader (closing speed)

MOBIL (Kesting, Treiber & Helbing 2007), for a change of the driver c to a new lane:
    safety:    a_new_follower_after >= -b_safe  (and the same for the changer, see below)
    incentive: (a_c_after - a_c_now) + p * (dA_new_follower + dA_old_follower) > a_gain

All functions are elementwise over arrays of any shape, so they serve every world at once.
"""

from __future__ import annotations

import numpy as np

IDM_DELTA = 4.0
# Drivers of logged traffic as Dojo assumes them where a log does not say how each person drives
# (the auto-labeler, a replay started from a scene): the middle of the ranges the world draws
# (dojo.world.scenarios).
TRAFFIC_DRIVER = {
    "t_headway": 1.6,
    "a_max": 1.6,
    "b_comf": 2.0,
    "s0": 2.75,
    "politeness": 0.3,
    "b_safe": 2.5,
    "a_gain": 0.25,
}
# The careful driver the labels come from: the world's expert ego (dojo.world.scenarios), with
# the middle of its drawn a_max.
CAREFUL_DRIVER = TRAFFIC_DRIVER | {"s0": 3.0, "b_safe": 2.0, "a_gain": 0.2}
NO_LEADER_GAP_M = 1.0e4  # a gap that far away has no effect on IDM
# highway-env's IDMVehicle clips accelerations to +/- ACC_MAX = 6 m/s^2; we do the same so the two
# worlds can be compared trajectory by trajectory.
ACCEL_LIMIT = 6.0


def idm_accel(
    v: np.ndarray,
    v0: np.ndarray,
    gap_m: np.ndarray,
    closing_mps: np.ndarray,
    a_max: np.ndarray,
    b_comf: np.ndarray,
    s0: np.ndarray,
    t_headway: np.ndarray,
) -> np.ndarray:
    """IDM acceleration [m/s^2]; pass gap NO_LEADER_GAP_M and closing 0 for a free road."""
    ratio_sq = np.square(np.maximum(v, 0.0) / np.maximum(v0, 0.1))
    free = 1.0 - ratio_sq * ratio_sq  # (v / v0)^IDM_DELTA with delta = 4, without a slow pow
    s_star = s0 + np.maximum(0.0, v * t_headway + v * closing_mps / (2.0 * np.sqrt(a_max * b_comf)))
    gap = np.maximum(gap_m, 0.1)
    return np.clip(a_max * (free - (s_star / gap) ** 2), -ACCEL_LIMIT, ACCEL_LIMIT)


def mobil_wants_change(
    a_self_now: np.ndarray,
    a_self_after: np.ndarray,
    a_new_follower_now: np.ndarray,
    a_new_follower_after: np.ndarray,
    a_old_follower_now: np.ndarray,
    a_old_follower_after: np.ndarray,
    politeness: np.ndarray,
    b_safe: np.ndarray,
    a_gain: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(wants, advantage): whether the change is safe and worth it, and its net advantage [m/s^2].

    Besides the new follower, the changer itself must not have to brake harder than ``b_safe``
    behind its new leader: without that, a driver braking hard in its own lane would swerve
    into any gap that is merely less bad, however short.
    """
    safe = (a_new_follower_after >= -b_safe) & (a_self_after >= -b_safe)
    advantage = (a_self_after - a_self_now) + politeness * (
        (a_new_follower_after - a_new_follower_now) + (a_old_follower_after - a_old_follower_now)
    )
    return safe & (advantage > a_gain), advantage


# Lane tracking: a cascade of proportional loops, lateral position -> heading -> yaw rate,
# with the road's curvature fed forward. Time constants [s].
TAU_LATERAL_S = 0.6
TAU_HEADING_S = 0.2
TAU_SPEED_S = 0.6
MAX_STEER_RAD = np.pi / 3


def steer_to_offset(
    d: np.ndarray,
    psi: np.ndarray,
    v: np.ndarray,
    d_target: np.ndarray,
    curvature: np.ndarray,
    length: np.ndarray,
    tau_lateral: float | np.ndarray = TAU_LATERAL_S,
) -> np.ndarray:
    """Front-wheel angle [rad] that brings a vehicle to lateral offset ``d_target`` [m]."""
    v_safe = np.maximum(v, 1.0)
    lateral_speed = -(d - d_target) / tau_lateral  # [m/s] wanted
    psi_ref = np.arcsin(np.clip(lateral_speed / v_safe, -1.0, 1.0))
    psi_ref = np.clip(psi_ref, -np.pi / 4, np.pi / 4)
    yaw_rate = (psi_ref - psi) / TAU_HEADING_S + curvature * v  # [rad/s] incl. the road's turn
    # kinematic bicycle with the reference point at mid-wheelbase: yaw_rate = v sin(beta) / (L/2)
    sin_beta = np.clip(yaw_rate * 0.5 * length / v_safe, -1.0, 1.0)
    steer = np.arctan(2.0 * np.tan(np.arcsin(sin_beta)))
    return np.clip(steer, -MAX_STEER_RAD, MAX_STEER_RAD)


def speed_to_target(v: np.ndarray, v_target: np.ndarray) -> np.ndarray:
    """Acceleration [m/s^2] that brings speed to ``v_target`` [m/s] (first-order, tau 0.6 s)."""
    return np.clip((v_target - v) / TAU_SPEED_S, -ACCEL_LIMIT, ACCEL_LIMIT)
