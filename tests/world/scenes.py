"""Hand-built one-world scenes for sensor tests: a straight road, the ego, chosen objects."""

from __future__ import annotations

from collections.abc import Sequence

from dojo.world.road import RoadConfig, Roads
from dojo.world.vehicles import BODY, Kind, Vehicles

LANE_W = 4.0
EGO_S = 500.0  # on the first straight, heading +x


def scene(
    objects: Sequence[tuple[Kind, float, float, float]] = (),
    ego_d: float = LANE_W,
    ego_s: float = EGO_S,
    config: RoadConfig | None = None,
) -> tuple[Roads, Vehicles]:
    """One world: the ego at (ego_s, ego_d) and objects (kind, ds from the ego, d, psi)."""
    roads = Roads.stack([config or RoadConfig(lanes=3, lane_width_m=LANE_W)])
    veh = Vehicles.empty(1, 1 + max(len(objects), 1))
    veh.active[0, 0], veh.s[0, 0], veh.d[0, 0] = True, ego_s, ego_d
    veh.length[0, 0], veh.width[0, 0], veh.height[0, 0] = BODY[Kind.CAR]
    for i, (kind, ds, d, psi) in enumerate(objects, start=1):
        length, width, height = BODY[kind]
        veh.active[0, i], veh.kind[0, i] = True, kind
        veh.s[0, i], veh.d[0, i], veh.psi[0, i] = ego_s + ds, d, psi
        veh.length[0, i], veh.width[0, i], veh.height[0, i] = length, width, height
    return roads, veh
