"""The hazard-pixel table: how many pixels each family's hazard covers when a driver must react.

**When a careful driver must start reacting.** Closing at ``v`` [m/s] on a hazard, the driver
reacts after :data:`REACTION_S` and then brakes at :data:`BRAKE_MPS2`; the gap must keep the
time-to-collision at or above :data:`TTC_MIN_S` throughout (the safety driver's critical
threshold). While braking, ``gap(t) = g - v t + a t^2 / 2`` and ``closing(t) = v - a t``, so the
least starting gap is ``max over t of  v t - a t^2/2 + TTC (v - a t)``, reached at
``t = v/a - TTC`` (or 0); :func:`reaction_distance_m` adds ``v * REACTION_S``. At 30 m/s that is
30 + 81.75 = 111.75 m; at the issue's 28 m/s without reaction time, 72 m.

**Each family's hazard** (:func:`hazard_cases`), as :mod:`dojo.world.scenarios` builds it:

* stalled: a stalled car, or debris, in the ego's lane, the ego at its top speed 30 m/s;
* lane_drop: the barrier where the ego's lane ends, at 30 m/s;
* merge: a ramp merger (6 m/s, the slowest start) in the lane to the right, the ego at 30 m/s;
* cut_in: the cutter, placed 12 m ahead (centre to centre) in the next lane, closing at up to
  7 m/s; its reaction distance is shorter than where it starts, so it is drawn where it starts;
* dense / highway: the leader, at the expert's following gap ``s0 + v T`` (3 m + 1.6 s) when it
  starts braking (ego at 24 and 30 m/s): reacting starts then, at that gap.

:func:`hazard_table` builds a straight road with the ego and the hazard alone, renders it with
the rig (:func:`dojo.world.camera.materials`), counts the hazard's pixels in every camera and
keeps the best camera, beside what the visibility rule computes for the same geometry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dojo.world.camera import GLASS, VEHICLE0, CameraRig, materials
from dojo.world.road import RoadConfig, Roads
from dojo.world.vehicles import BODY, Kind, Vehicles
from dojo.world.visibility import MIN_PIXELS, pixel_cover

REACTION_S = 1.0  # [s] from the hazard showing to the brakes acting
BRAKE_MPS2 = 6.0  # [m/s^2] hard braking
TTC_MIN_S = 1.5  # [s] kept throughout (the safety driver's critical TTC)
TOP_SPEED_MPS = 30.0  # the ego's highest desired speed in any family
LANE_W_M = 4.0
EGO_S_M = 300.0  # on the first straight
EXPERT_S0_M, EXPERT_T_S = 3.0, 1.6  # the expert's IDM jam distance and time gap


def reaction_distance_m(closing_mps: float) -> float:
    """Gap [m] at which a driver closing at ``closing_mps`` must start reacting (module doc)."""
    v, a = closing_mps, BRAKE_MPS2
    t = max(v / a - TTC_MIN_S, 0.0)
    return v * REACTION_S + v * t - 0.5 * a * t**2 + TTC_MIN_S * (v - a * t)


@dataclass(frozen=True)
class HazardCase:
    """One family's hazard: what it is, how fast the ego closes on it, where it is."""

    family: str
    hazard: str
    kind: Kind
    closing_mps: float
    gap_m: float  # from the ego's front bumper to the hazard's near face, along the lane
    lateral_m: float  # the hazard's centre left of the ego's, across the lane


@dataclass(frozen=True)
class HazardRow:
    """One row of the table: the camera showing most of the hazard, its rendered pixels and the
    rule's pixel cover in that camera."""

    case: HazardCase
    camera: str
    rendered_px: int
    rule_px: float

    @property
    def visible(self) -> bool:
        return self.rule_px >= MIN_PIXELS


def _width(kind: Kind) -> float:
    # barriers span the lane as scenarios.py puts them
    return LANE_W_M - 0.2 if kind == Kind.BARRIER else BODY[kind][1]


def hazard_cases() -> list[HazardCase]:
    stop = reaction_distance_m(TOP_SPEED_MPS)
    merger = reaction_distance_m(TOP_SPEED_MPS - 6.0)
    cut_in_gap = 12.0 - BODY[Kind.CAR][0]  # centre to centre 12 m, two cars' half lengths

    def follow(v: float) -> float:
        return EXPERT_S0_M + v * EXPERT_T_S

    return [
        HazardCase("stalled", "stalled car", Kind.CAR, TOP_SPEED_MPS, stop, 0.0),
        HazardCase("stalled", "debris", Kind.DEBRIS, TOP_SPEED_MPS, stop, 0.0),
        HazardCase("lane_drop", "lane-end barrier", Kind.BARRIER, TOP_SPEED_MPS, stop, 0.0),
        HazardCase("merge", "ramp merger", Kind.CAR, TOP_SPEED_MPS - 6.0, merger, -LANE_W_M),
        HazardCase("cut_in", "cutter, next lane", Kind.CAR, 7.0, cut_in_gap, LANE_W_M),
        HazardCase("dense", "braking leader", Kind.CAR, 0.0, follow(24.0), 0.0),
        HazardCase("highway", "braking leader", Kind.CAR, 0.0, follow(TOP_SPEED_MPS), 0.0),
    ]


def _scene(case: HazardCase) -> tuple[Roads, Vehicles]:
    """A straight 3-lane road, the ego in the middle lane, the hazard alone ahead of it."""
    roads = Roads.stack([RoadConfig(lanes=3, lane_width_m=LANE_W_M)])
    veh = Vehicles.empty(1, 2)
    ego_len, ego_w, ego_h = BODY[Kind.CAR]
    length, _, height = BODY[case.kind]
    veh.active[0] = True
    veh.kind[0] = [Kind.CAR, case.kind]
    veh.s[0] = [EGO_S_M, EGO_S_M + 0.5 * ego_len + case.gap_m + 0.5 * length]
    veh.d[0] = [LANE_W_M, LANE_W_M + case.lateral_m]
    veh.length[0] = [ego_len, length]
    veh.width[0] = [ego_w, _width(case.kind)]
    veh.height[0] = [ego_h, height]
    return roads, veh


def hazard_row(rig: CameraRig, case: HazardCase) -> HazardRow:
    roads, veh = _scene(case)
    mat = materials(roads, veh, rig)[0]  # (C, H, W)
    rendered = ((mat == GLASS) | (mat >= VEHICLE0)).reshape(len(rig.cameras), -1).sum(axis=1)
    x = 0.5 * BODY[Kind.CAR][0] + case.gap_m + 0.5 * BODY[case.kind][0]
    rule = pixel_cover(
        rig,
        np.array(x),
        np.array(case.lateral_m),
        np.array(0.0),
        veh.length[0, 1],
        veh.width[0, 1],
        veh.height[0, 1],
    )  # (C,)
    best = int(np.argmax(rendered))
    return HazardRow(case, rig.cameras[best].name, int(rendered[best]), float(rule[best]))


def hazard_table(rig: CameraRig) -> list[HazardRow]:
    """Every family's hazard rendered with ``rig`` at its reaction distance (module docstring)."""
    return [hazard_row(rig, case) for case in hazard_cases()]


def format_markdown(rows: list[HazardRow]) -> str:
    lines = [
        "| family | hazard | closing m/s | distance m | camera | px rendered | px rule |",
        "|---|---|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        c = r.case
        lines.append(
            f"| {c.family} | {c.hazard} | {c.closing_mps:.0f} | {c.gap_m:.1f} | {r.camera} "
            f"| {r.rendered_px} | {r.rule_px:.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":  # python -m dojo.world.hazard_pixels [RIG]: the table for docs/rig.md
    import sys

    from dojo.world.rigs import DEFAULT_RIG

    name = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_RIG
    print(format_markdown(hazard_table(CameraRig.named(name))))


__all__ = [
    "BRAKE_MPS2",
    "REACTION_S",
    "TTC_MIN_S",
    "HazardCase",
    "HazardRow",
    "format_markdown",
    "hazard_cases",
    "hazard_row",
    "hazard_table",
    "reaction_distance_m",
]
