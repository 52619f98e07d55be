"""Seeded scenario generator: named families of roads, traffic and hazards.

A scenario is fully determined by ``(family, seed)``. Seeds are split once for the whole
project so that evaluation never sees a situation training data came from:

    TRAIN_SEEDS   = [0, 1_000_000)           fleets, data generation, training
    HELDOUT_SEEDS = [1_000_000, 1_100_000)   closed-loop evaluation only

Any seed in [0, 2**31) is accepted by the world; :func:`check_split` is what data generation
calls to refuse held-out seeds.

Families (all on ring roads, so density is constant; traffic far from the ego is recycled
ahead of or behind it):

    highway    2-5 lanes, mixed cars and slow trucks; human drivers with reaction delays and
               attention lapses; now and then a hard-braking vehicle somewhere in traffic.
    merge      an on-ramp joins the right lane ahead; ramp drivers merge impolitely.
    lane_drop  the right lane ends ahead (a barrier), its traffic must merge left.
    cut_in     a driver in the next lane cuts in aggressively just ahead of the ego.
    stalled    a stalled car or debris blocks the ego's lane ahead.
    dense      heavy, slower traffic in which the ego's leader brakes hard.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from dojo.errors import DojoConfigError
from dojo.world.road import RoadConfig
from dojo.world.vehicles import BODY, Kind, Vehicles

FAMILIES = ("highway", "merge", "lane_drop", "cut_in", "stalled", "dense")
HAZARD_FAMILIES = ("merge", "lane_drop", "cut_in", "stalled", "dense")
TRAIN_SEEDS = range(0, 1_000_000)
HELDOUT_SEEDS = range(1_000_000, 1_100_000)
MAX_SEED = 2**31

# Traffic window kept around the ego [m]; vehicles beyond it are recycled to the other end.
WINDOW_AHEAD_M = 300.0
WINDOW_BEHIND_M = 200.0


class Hazard(IntEnum):
    NONE = 0
    HARD_BRAKE = 1  # the ego's leader brakes hard
    CUT_IN = 2  # vehicle `actor` cuts into the ego's lane


@dataclass
class HazardPlan:
    """Timed events of one world; at most MAX_HAZARDS."""

    time_s: list[float] = field(default_factory=list)
    kind: list[int] = field(default_factory=list)
    actor: list[int] = field(default_factory=list)  # vehicle slot (CUT_IN) or -1 (the ego's leader)
    strength: list[float] = field(
        default_factory=list
    )  # HARD_BRAKE: decel [m/s^2]; CUT_IN: dv [m/s]
    duration_s: list[float] = field(default_factory=list)


MAX_HAZARDS = 4


@dataclass
class Scenario:
    family: str
    seed: int
    road: RoadConfig
    vehicles: Vehicles  # one world, (1, V)
    hazards: HazardPlan
    ramp_share: float  # share of recycled traffic placed on the on-ramp


def check_family(family: str) -> str:
    if family not in FAMILIES:
        raise DojoConfigError(
            f"Unknown scenario family {family!r}; choose one of: {', '.join(FAMILIES)}."
        )
    return family


def check_seed(seed: object) -> int:
    if (
        isinstance(seed, bool)
        or not isinstance(seed, (int, np.integer))
        or not 0 <= int(seed) < MAX_SEED
    ):
        raise DojoConfigError(
            f"Seed {seed!r} is out of range: seeds are integers in [0, {MAX_SEED})."
        )
    return int(seed)


def check_split(seed: int, split: str) -> int:
    """Refuse a seed that is not in ``split`` ('train' or 'heldout')."""
    seeds = {"train": TRAIN_SEEDS, "heldout": HELDOUT_SEEDS}.get(split)
    if seeds is None:
        raise DojoConfigError(f"Unknown split {split!r}; use 'train' or 'heldout'.")
    if check_seed(seed) not in seeds:
        raise DojoConfigError(
            f"Seed {seed} is not in the {split} range [{seeds.start}, {seeds.stop})."
        )
    return seed


@dataclass
class _Traffic:
    """Knobs one family sets; the generator turns them into vehicles."""

    lanes: tuple[int, int] = (2, 5)
    # Vehicles kept in the 500 m window round the ego. A count, not a density, so that every
    # world of a family needs about as many slots and batches carry little padding: two-lane
    # roads are then busier than five-lane ones.
    vehicles: tuple[int, int] = (22, 32)
    truck_share: float = 0.15
    v0_mps: tuple[float, float] = (24.0, 33.0)
    truck_v0_mps: tuple[float, float] = (21.0, 24.0)
    headway_s: tuple[float, float] = (1.2, 2.0)
    politeness: tuple[float, float] = (0.1, 0.5)
    reaction_s: tuple[float, float] = (0.1, 0.4)
    lapse_per_min: tuple[float, float] = (0.0, 1.0)
    ego_lane: str = "any"  # 'any', 'right'


_FAMILY_TRAFFIC = {
    "highway": _Traffic(),
    "merge": _Traffic(lanes=(2, 4), vehicles=(20, 28), ego_lane="right"),
    "lane_drop": _Traffic(lanes=(3, 5), vehicles=(20, 28), ego_lane="right"),
    "cut_in": _Traffic(vehicles=(14, 24)),
    "stalled": _Traffic(vehicles=(10, 20)),
    "dense": _Traffic(lanes=(2, 4), vehicles=(40, 50), v0_mps=(16.0, 24.0), headway_s=(1.0, 1.6)),
}


OBSTACLE_SLOTS = 2


def slots_needed(family: str) -> int:
    """Vehicle slots any scenario of ``family`` can need: the ego, its traffic and obstacles."""
    return 1 + _FAMILY_TRAFFIC[check_family(family)].vehicles[1] + OBSTACLE_SLOTS


@dataclass(frozen=True)
class _Head:
    """A scenario's first draws: its road, its traffic's size and its ego."""

    rng: np.random.Generator  # at the draws that follow
    road: RoadConfig
    ego_s: float
    n_traffic: int
    ego_lane: int
    ego_v0: float


def _head(family: str, seed: int) -> _Head:
    rng = np.random.default_rng([seed, FAMILIES.index(family), 0xD0])
    knobs = _FAMILY_TRAFFIC[family]
    lanes = int(rng.integers(knobs.lanes[0], knobs.lanes[1] + 1))
    straight = float(rng.uniform(1200.0, 2000.0))
    radius = float(rng.uniform(400.0, 1000.0))
    road_kw: dict[str, float] = {}
    ego_s = float(rng.uniform(100.0, 300.0))
    if family == "merge":
        road_kw.update(
            ramp_start_m=ego_s + float(rng.uniform(120.0, 250.0)),
            ramp_length_m=float(rng.uniform(200.0, 300.0)),
        )
    if family == "lane_drop":
        drop_start = ego_s + float(rng.uniform(250.0, 500.0))
        road_kw.update(drop_start_m=drop_start, drop_length_m=min(600.0, straight - drop_start))
    road = RoadConfig(
        lanes=lanes, lane_width_m=4.0, straight_m=straight, radius_m=radius, **road_kw
    )

    n_traffic = int(rng.integers(knobs.vehicles[0], knobs.vehicles[1] + 1))
    ego_lane = 0 if knobs.ego_lane == "right" else int(rng.integers(0, lanes))
    ego_v0 = float(rng.uniform(26.0, 30.0)) if family != "dense" else float(rng.uniform(20.0, 24.0))
    return _Head(rng, road, ego_s, n_traffic, ego_lane, ego_v0)


def road_and_ego_v0(family: str, seed: int) -> tuple[RoadConfig, float]:
    """The road of scenario ``(family, seed)`` and its ego's desired speed [m/s], exactly as
    :func:`generate` makes them, without placing its traffic (a fraction of the time)."""
    head = _head(check_family(family), check_seed(seed))
    return head.road, head.ego_v0


def generate(family: str, seed: int) -> Scenario:
    """Build the scenario ``(family, seed)``; the same pair always gives the same scenario."""
    family, seed = check_family(family), check_seed(seed)
    head = _head(family, seed)
    rng, road, ego_s, n_traffic = head.rng, head.road, head.ego_s, head.n_traffic
    ego_lane, ego_v0, lanes = head.ego_lane, head.ego_v0, head.road.lanes
    knobs = _FAMILY_TRAFFIC[family]
    v = Vehicles.empty(1, 1 + n_traffic + OBSTACLE_SLOTS)

    _put(v, 0, Kind.CAR, ego_s, ego_lane, road, speed=ego_v0 - 2.0, rng=None)
    _driver(v, 0, rng, knobs, expert=True, v0=ego_v0)

    # Traffic spread over the window with a minimum spacing per lane.
    placed: list[tuple[int, float]] = [(ego_lane, ego_s)]
    slot = 1
    tries = 0
    while slot < 1 + n_traffic and tries < 50 * n_traffic:
        tries += 1
        kind = Kind.TRUCK if rng.uniform() < knobs.truck_share else Kind.CAR
        lane = int(rng.integers(0, lanes if kind == Kind.CAR else 2))  # trucks keep right
        s = ego_s + float(rng.uniform(-WINDOW_BEHIND_M, WINDOW_AHEAD_M))
        if any(lane == pl and abs(s - ps) < 30.0 for pl, ps in placed):
            continue
        if (
            family == "lane_drop"
            and lane == 0
            and road.drop_start_m - 40.0 <= s < road.drop_start_m + road.drop_length_m
        ):
            continue
        placed.append((lane, s))
        _driver(v, slot, rng, knobs, truck=kind == Kind.TRUCK)
        _put(v, slot, kind, s, lane, road, speed=min(float(v.v0[0, slot]), ego_v0) - 2.0, rng=rng)
        slot += 1
    v.active[0, slot:] = False
    _settle_speeds(v)

    hazards = HazardPlan()
    obstacle = 1 + n_traffic
    if road.ramp_length_m > 0:  # the end of the ramp
        _put_obstacle(v, obstacle, Kind.BARRIER, road.ramp_start_m + road.ramp_length_m, -1, road)
    if road.drop_length_m > 0:  # the start of the dropped stretch
        _put_obstacle(v, obstacle, Kind.BARRIER, road.drop_start_m, 0, road)
    if family == "stalled":
        kind = Kind.DEBRIS if rng.uniform() < 0.3 else Kind.CAR
        _put_obstacle(
            v, obstacle + 1, kind, ego_s + float(rng.uniform(150.0, 350.0)), ego_lane, road
        )
        _clear_lane(v, ego_lane, ego_s, v.s[0, obstacle + 1], road)
    if family == "merge":
        _place_mergers(v, rng, road)
    if family == "cut_in":
        cutter = _place_cutter(v, rng, road, ego_lane, ego_s)
        for t in sorted(rng.uniform(4.0, 24.0, size=1)):
            hazards.time_s.append(float(t))
            hazards.kind.append(Hazard.CUT_IN)
            hazards.actor.append(cutter)
            dv = float(rng.uniform(3.0, 7.0))
            hazards.strength.append(dv)
            # cut-in gap [m]: the time-to-collision at the cut is 2.2-3.5 s, tight enough that a
            # driver who does not react ends up critical, loose enough that an attentive one need not
            hazards.duration_s.append(max(8.0, dv * float(rng.uniform(2.2, 3.5))))
    n_brakes = {"dense": 2, "highway": int(rng.uniform() < 0.3)}.get(family, 0)
    for t in sorted(rng.uniform(5.0, 35.0, size=n_brakes)):
        hazards.time_s.append(float(t))
        hazards.kind.append(Hazard.HARD_BRAKE)
        hazards.actor.append(-1)
        hazards.strength.append(float(rng.uniform(4.0, 7.0)))
        hazards.duration_s.append(float(rng.uniform(1.5, 3.5)))
    # The ego's own human driver (used when nobody else drives it) is as fallible as the
    # traffic's; drawn from a stream of its own so the rest of the scenario does not change.
    ego_rng = np.random.default_rng([seed, FAMILIES.index(family), 0xE0])
    v.reaction_steps[0, 0] = int(round(float(ego_rng.uniform(*knobs.reaction_s)) / 0.1))
    v.lapse_rate[0, 0] = float(ego_rng.uniform(*knobs.lapse_per_min)) / 60.0
    return Scenario(family, seed, road, v, hazards, ramp_share=0.5 if family == "merge" else 0.0)


def _put(
    v: Vehicles,
    i: int,
    kind: Kind,
    s: float,
    lane: int,
    road: RoadConfig,
    speed: float,
    rng: np.random.Generator | None,
) -> None:
    length, width, height = BODY[kind]
    scale = 1.0 if rng is None else float(rng.uniform(0.9, 1.1))
    v.active[0, i] = True
    v.driven[0, i] = True
    v.kind[0, i] = kind
    v.s[0, i] = s % road.length_m
    v.d[0, i] = lane * road.lane_width_m
    v.v[0, i] = max(speed, 0.0)
    v.length[0, i], v.width[0, i], v.height[0, i] = length * scale, width, height
    v.target_lane[0, i] = lane


def _place_mergers(v: Vehicles, rng: np.random.Generator, road: RoadConfig) -> None:
    """Turn the traffic slots farthest from the ramp into impatient drivers queued on it.

    They start slow at the head of the ramp and reach its end about when the ego passes; with
    politeness 0 and a high b_safe they merge into gaps that make the right lane brake hard.
    """
    slots = [
        i
        for i in range(1, v.shape[1])
        if v.active[0, i] and v.driven[0, i] and v.kind[0, i] == Kind.CAR
    ]
    slots.sort(key=lambda i: -abs(v.s[0, i] - road.ramp_start_m))
    for k, i in enumerate(slots[:3]):
        s = road.ramp_start_m + 5.0 + 25.0 * k + float(rng.uniform(0.0, 10.0))
        _put(v, i, Kind.CAR, s, -1, road, speed=float(rng.uniform(6.0, 12.0)), rng=rng)
        v.politeness[0, i] = 0.0
        v.b_safe[0, i] = float(rng.uniform(4.0, 6.0))
        v.a_gain[0, i] = 0.0


def _settle_speeds(v: Vehicles) -> None:
    """Start nobody faster than the IDM equilibrium speed for its gap, (gap - s0) / T.

    Positions and desired speeds are drawn independently; without this a fast car can start
    30 m behind a slow truck and open the episode with an emergency stop.
    """
    live = np.nonzero(v.active[0])[0]
    for lane in np.unique(v.target_lane[0, live]):
        row = live[v.target_lane[0, live] == lane]
        row = row[np.argsort(v.s[0, row])[::-1]]  # front to back
        for lead, foll in zip(row[:-1], row[1:], strict=True):
            gap = v.s[0, lead] - v.s[0, foll] - 0.5 * (v.length[0, lead] + v.length[0, foll])
            v_eq = max(gap - v.s0[0, foll], 0.0) / v.t_headway[0, foll]
            v.v[0, foll] = min(v.v[0, foll], v_eq, v.v[0, lead] + 3.0)


def _put_obstacle(v: Vehicles, i: int, kind: Kind, s: float, lane: int, road: RoadConfig) -> None:
    _put(v, i, kind, s, lane, road, speed=0.0, rng=None)
    v.driven[0, i] = False
    if kind == Kind.BARRIER:
        v.width[0, i] = road.lane_width_m - 0.2


def _clear_lane(v: Vehicles, lane: int, s_from: float, s_to: float, road: RoadConfig) -> None:
    """Move traffic out of the ego's way so the obstacle, not a leader, is what the ego meets."""
    for i in range(1, v.shape[1]):
        if (
            v.active[0, i]
            and v.driven[0, i]
            and v.target_lane[0, i] == lane
            and s_from < v.s[0, i] < s_to + 30.0
        ):
            v.active[0, i] = False


def _place_cutter(
    v: Vehicles, rng: np.random.Generator, road: RoadConfig, ego_lane: int, ego_s: float
) -> int:
    """Reuse the traffic slot nearest the ego as the cutter, in a lane next to the ego's."""
    options = [lane for lane in (ego_lane - 1, ego_lane + 1) if 0 <= lane < road.lanes]
    lane = options[int(rng.integers(0, len(options)))]
    slots = [i for i in range(1, v.shape[1]) if v.active[0, i] and v.driven[0, i]]
    i = min(slots, key=lambda k: abs(v.s[0, k] - ego_s))
    _put(v, i, Kind.CAR, ego_s + 12.0, lane, road, speed=float(v.v[0, 0]), rng=None)
    for k in slots:  # keep the cutter's lane clear near it
        if k != i and v.target_lane[0, k] == lane and abs(v.s[0, k] - v.s[0, i]) < 20.0:
            v.active[0, k] = False
    return i


def _driver(
    v: Vehicles,
    i: int,
    rng: np.random.Generator,
    k: _Traffic,
    expert: bool = False,
    truck: bool = False,
    v0: float | None = None,
) -> None:
    v.v0[0, i] = (
        v0 if v0 is not None else float(rng.uniform(*(k.truck_v0_mps if truck else k.v0_mps)))
    )
    v.t_headway[0, i] = 1.6 if expert else float(rng.uniform(*k.headway_s))
    v.a_max[0, i] = 0.8 if truck else float(rng.uniform(1.2, 2.0))
    v.b_comf[0, i] = 2.0 if expert else float(rng.uniform(1.5, 2.5))
    v.s0[0, i] = 3.0 if expert else float(rng.uniform(2.0, 3.5))
    v.politeness[0, i] = 0.3 if expert else float(rng.uniform(*k.politeness))
    v.b_safe[0, i] = 2.0 if expert else float(rng.uniform(2.0, 3.0))
    v.a_gain[0, i] = 0.2 if expert else float(rng.uniform(0.1, 0.4))
    v.reaction_steps[0, i] = 0 if expert else int(round(float(rng.uniform(*k.reaction_s)) / 0.1))
    v.lapse_rate[0, i] = 0.0 if expert else float(rng.uniform(*k.lapse_per_min)) / 60.0
