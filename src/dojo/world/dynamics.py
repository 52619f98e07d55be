"""Kinematic bicycle model in road (Frenet) coordinates.

The reference point is mid-wheelbase with the wheelbase taken as the body length, so the slip
angle is beta = atan(tan(steer) / 2). With curvature kappa of the reference line at s:

    ds/dt   = v cos(psi + beta) / (1 - kappa d)
    dd/dt   = v sin(psi + beta)
    dpsi/dt = v sin(beta) / (L / 2) - kappa ds/dt
    dv/dt   = a

Integrated with explicit Euler (positions from the speed at the start of the step), the same
order highway-env uses, so trajectories can be compared between the two.
"""

from __future__ import annotations

import numpy as np

DT_S = 0.1  # one world step = one decision = one camera frame (10 Hz)


def bicycle_step(
    s: np.ndarray,
    d: np.ndarray,
    psi: np.ndarray,
    v: np.ndarray,
    accel: np.ndarray,
    steer: np.ndarray,
    length: np.ndarray,
    curvature: np.ndarray,
    dt: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One Euler step; returns new (s, d, psi, v). Speed is kept >= 0 (no reversing)."""
    beta = np.arctan(0.5 * np.tan(steer))
    heading = psi + beta
    s_rate = v * np.cos(heading) / np.maximum(1.0 - curvature * d, 0.05)
    s_new = s + s_rate * dt
    d_new = d + v * np.sin(heading) * dt
    psi_new = psi + (v * np.sin(beta) / (0.5 * length) - curvature * s_rate) * dt
    psi_new = (psi_new + np.pi) % (2 * np.pi) - np.pi
    v_new = np.maximum(v + accel * dt, 0.0)
    return s_new, d_new, psi_new, v_new
