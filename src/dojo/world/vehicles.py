"""Vehicles as a struct of arrays over W worlds x V slots.

Slot 0 of every world is the ego. Other slots hold human-driven traffic and static obstacles
(stalled vehicles, debris, the barrier at the end of a ramp or a dropped lane), so that leader
search, time-to-collision and collisions treat every object the same way. ``active`` masks unused
slots. Positions are Frenet (see :mod:`dojo.world.road`); ``psi`` is the heading relative to the
road tangent.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import IntEnum

import numpy as np


class Kind(IntEnum):
    CAR = 0
    TRUCK = 1
    BARRIER = 2  # the end of a lane: a ramp's end or the start of a dropped lane
    DEBRIS = 3


# Typical body sizes [m]: length, width, height. Drivers vary around them.
BODY = {
    Kind.CAR: (4.6, 1.9, 1.5),
    Kind.TRUCK: (12.0, 2.5, 3.6),
    Kind.BARRIER: (1.0, 3.6, 1.0),
    Kind.DEBRIS: (1.0, 1.6, 0.5),
}


@dataclass
class Vehicles:
    """Struct of arrays, each (W, V)."""

    active: np.ndarray  # bool: slot in use
    driven: np.ndarray  # bool: moves (False for obstacles and stalled vehicles)
    kind: np.ndarray  # int8, a Kind
    s: np.ndarray  # [m] along the road
    d: np.ndarray  # [m] lateral offset, left positive
    psi: np.ndarray  # [rad] heading relative to the road
    v: np.ndarray  # [m/s] speed, >= 0
    accel: np.ndarray  # [m/s^2] last applied acceleration
    steer: np.ndarray  # [rad] last applied front-wheel angle
    length: np.ndarray  # [m]
    width: np.ndarray  # [m]
    height: np.ndarray  # [m]
    target_lane: np.ndarray  # int: lane the driver steers to
    crashed: np.ndarray  # bool: has collided (it then stops)
    # Driver model parameters (IDM: Treiber et al. 2000; MOBIL: Kesting et al. 2007)
    v0: np.ndarray  # [m/s] desired speed
    t_headway: np.ndarray  # [s] desired time gap T
    a_max: np.ndarray  # [m/s^2] maximum acceleration a
    b_comf: np.ndarray  # [m/s^2] comfortable deceleration b (positive)
    s0: np.ndarray  # [m] jam distance
    politeness: np.ndarray  # MOBIL p
    b_safe: np.ndarray  # [m/s^2] MOBIL: largest deceleration one may impose on the new follower
    a_gain: np.ndarray  # [m/s^2] MOBIL: acceleration gain that makes a change worth it
    reaction_steps: np.ndarray  # int: reaction delay in world steps
    lapse_rate: np.ndarray  # [1/s] rate at which attention lapses start
    lapse_left: np.ndarray  # [s] time left in the current lapse (0: attentive)

    @classmethod
    def empty(cls, w: int, v: int) -> Vehicles:
        out: dict[str, np.ndarray] = {}
        for f in fields(cls):
            if f.name in ("active", "driven", "crashed"):
                out[f.name] = np.zeros((w, v), dtype=bool)
            elif f.name in ("kind",):
                out[f.name] = np.zeros((w, v), dtype=np.int8)
            elif f.name in ("target_lane", "reaction_steps"):
                out[f.name] = np.zeros((w, v), dtype=np.int64)
            else:
                out[f.name] = np.zeros((w, v), dtype=np.float64)
        # Unused slots get harmless sizes and parameters so no formula divides by zero.
        for name in ("length", "width", "height", "v0", "a_max", "b_comf", "s0", "t_headway"):
            out[name][:] = 1.0
        return cls(**out)

    @property
    def shape(self) -> tuple[int, int]:
        return self.s.shape

    def take(self, idx: np.ndarray) -> Vehicles:
        """The worlds ``idx`` as a new (len(idx), V) batch (copies)."""
        return Vehicles(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def assign(self, idx: np.ndarray, other: Vehicles) -> None:
        """Overwrite worlds ``idx`` with ``other`` (which has len(idx) worlds and <= V slots)."""
        v = other.shape[1]
        blank = Vehicles.empty(1, self.shape[1])
        for f in fields(self):
            mine = getattr(self, f.name)
            mine[idx] = getattr(blank, f.name)
            mine[idx, :v] = getattr(other, f.name)
