"""Our drivers and dynamics against highway-env's, situation by situation.

Both sides are set up by hand on a straight road, stepped at the same dt with the same IDM/MOBIL
parameters (highway-env's defaults, read from its classes by ``highway_env_driver_params``):

- highway-env: ``IDMVehicle`` instances on a ``Road`` of ``straight_road_network`` lanes, each step
  ``road.act()`` then ``road.step(dt)`` (what its envs do per simulation frame);
- ours: ``drivers.idm_accel`` + ``drivers.mobil_wants_change`` + ``drivers.steer_to_offset`` +
  ``dynamics.bicycle_step`` in a small loop over the same states.

On a straight road highway-env's (x, y, heading) are exactly our Frenet (s, d, psi) with zero
curvature, and its lane k (y = 4 k) is our lane k (d = 4 k). Its y axis points to the right of
travel, ours to the left, so its "left" lane change is a "right" one in our naming: the equations
are mirror images and the numbers are the same.

The test loop copies three pieces of highway-env's scaffolding around the driver models so that
the comparison isolates the models themselves (they are not claims about our world's traffic
code): a vehicle is "in" a lane when within half a lane width + 1 m of its centre (its
``on_lane(margin=1)``); while changing lanes the IDM command is the smaller of the ones for the
current and the target lane; and MOBIL is consulted when a per-vehicle timer, advanced by dt each
step and reset at each decision, exceeds ``LANE_CHANGE_DELAY`` (with dt = 0.1 the float sum of
ten steps is 0.99999..., so highway-env in fact decides every 1.1 s).

Parameter mapping (exact): highway-env's IDM measures the gap centre-to-centre and puts the body
length into ``DISTANCE_WANTED = 5 + LENGTH``; it is our ``idm_accel`` fed the centre-to-centre gap
(our bumper gap + half of each length) with s0 = DISTANCE_WANTED. Feeding our bumper gap with
s0 = 5 m instead is a different model (``s*/gap`` is not ``d*/d``);
``test_bumper_gap_convention_differs_by_a_bounded_amount`` measures how different.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest

pytest.importorskip("highway_env")

from highway_env.road.road import Road, RoadNetwork  # noqa: E402
from highway_env.vehicle.behavior import IDMVehicle  # noqa: E402
from highway_env.vehicle.kinematics import Vehicle  # noqa: E402

from dojo.world import drivers  # noqa: E402
from dojo.world.drivers import idm_accel, mobil_wants_change, steer_to_offset  # noqa: E402
from dojo.world.dynamics import bicycle_step  # noqa: E402
from dojo.world.reference import highway_env_driver_params, measure_highway_env  # noqa: E402

P = highway_env_driver_params()
DT = 0.1
LANE_W = P["lane_width_m"]
LENGTH = P["length_m"]

# --- Tolerances: max |ours - highway-env| over a run; measured values in the comments ---------
# Car following, (a) (b) (c) and the straight part of (e). With the exact mapping both sides do
# the same arithmetic; the only difference left is our "no leader" convention: idm_accel is fed
# NO_LEADER_GAP_M = 1e4 m, which still subtracts a_max (s*/1e4)^2 ~ 1e-4 m/s^2, where highway-env
# drops the term. Behind a leader the match is exact to the last bit (c: 9e-16 m/s, 0 m).
FOLLOW_SPEED_TOL_MPS = 1e-3  # measured 2.3e-4 m/s (a), 8.4e-5 (b), 9e-16 (c), 1.7e-4 (e)
FOLLOW_POSITION_TOL_M = 1e-2  # measured 3.9e-3 m (a: position after 20 s), gap 2.6e-4 (b), 0 (c)
# Lane change (d). highway-env's IDM takes the closing speed as the velocity difference projected
# on the ego's heading, v - v_lead cos(psi - psi_lead); ours takes v - v_lead along the road. The
# ego yaws up to ~0.27 rad while still behind its old leader, so for ~0.4 s its IDM commands
# differ by up to ~0.1 m/s^2 (test_d_difference_is_the_projected_closing_speed shows this is the
# whole difference). The lateral controller and the bicycle are otherwise identical.
LANE_CHANGE_LATERAL_TOL_M = 2e-3  # measured max |d diff| 8.2e-4 m
LANE_CHANGE_SPEED_TOL_MPS = 0.1  # measured 0.041 m/s (just after the change; decays to 1e-3)
LANE_CHANGE_POSITION_TOL_M = 0.3  # measured 0.14 m after 10 s
# MOBIL's inputs at the first decision: same formula on the same state, but for the no-leader
# term again (the ego's free road in the new lane): measured 6.8e-5 m/s^2 incentive, 0 new follower.
MOBIL_ACCEL_TOL = 2e-4
# Standstill (c'): highway-env lets speeds go negative; IDM stopping behind a stopped car
# overshoots to -0.39 m/s and creeps back and forth, where our bicycle_step holds v >= 0. Exact
# until its first negative speed (t = 10.6 s), then:
STANDSTILL_SPEED_TOL_MPS = 0.6  # measured 0.39 m/s
STANDSTILL_GAP_TOL_M = 1.5  # measured 1.03 m (final gap ours 9.98 m vs 9.09 m centre to centre)
# Bumper-gap convention (our bumper gap with s0 = DISTANCE_WANTED - LENGTH = 5 m) in (b): the
# steady gap is shorter by LENGTH (1/sqrt(1 - (v/v0)^4) - 1) = 0.58 m at 20 m/s, v0 = 30 m/s.
BUMPER_CONVENTION_GAP_TOL_M = 0.7  # measured 0.575 m (at steady state)
BUMPER_CONVENTION_SPEED_TOL_MPS = 0.1  # measured 0.044 m/s (transient)

ScriptFn = Callable[[float, float], float]  # (t, v) -> acceleration of a scripted vehicle


@dataclass
class Car:
    s: float  # [m] centre position along the road
    lane: int
    v: float  # [m/s]
    v0: float = 0.0  # IDM target speed [m/s] (unused when scripted)
    script: ScriptFn | None = None  # a scripted (non-IDM) vehicle's acceleration
    mobil: bool = False  # decides lane changes
    timer: float = 1.05  # MOBIL timer at t = 0 (> LANE_CHANGE_DELAY: decides on the first step)


@dataclass
class Decision:
    t: float
    vehicle: int
    lane: int
    wants: bool
    advantage: float
    new_follower_after: float


@dataclass
class Traj:
    s: np.ndarray  # (steps + 1, n)
    d: np.ndarray
    v: np.ndarray
    target: np.ndarray
    decisions: list[Decision] = field(default_factory=list)


def _traj(rec: dict[str, list[list[float]]], decisions: list[Decision] | None = None) -> Traj:
    s, d, v, target = (np.asarray(rec[k], dtype=np.float64) for k in ("s", "d", "v", "target"))
    return Traj(s=s, d=d, v=v, target=target, decisions=decisions or [])


# ----------------------------------------------------------------------------- highway-env side
def run_highway_env(cars: list[Car], seconds: float) -> Traj:
    lanes = max(c.lane for c in cars) + 1
    net = RoadNetwork.straight_road_network(lanes=lanes, speed_limit=None)
    road = Road(network=net, np_random=np.random.RandomState(0), record_history=False)
    vehicles: list[Vehicle] = []
    for c in cars:
        pos = net.get_lane(("0", "1", c.lane)).position(c.s, 0.0)
        if c.script is not None:
            veh = Vehicle(road, pos, heading=0.0, speed=c.v)
        else:
            veh = IDMVehicle(
                road,
                pos,
                heading=0.0,
                speed=c.v,
                target_speed=c.v0,
                enable_lane_change=c.mobil,
                timer=c.timer,
            )
        road.vehicles.append(veh)
        vehicles.append(veh)
    rec: dict[str, list[list[float]]] = {"s": [], "d": [], "v": [], "target": []}

    def record() -> None:
        rec["s"].append([float(x.position[0]) for x in vehicles])
        rec["d"].append([float(x.position[1]) for x in vehicles])
        rec["v"].append([float(x.speed) for x in vehicles])
        rec["target"].append(
            [float(getattr(x, "target_lane_index", x.lane_index)[2]) for x in vehicles]
        )

    record()
    for k in range(int(round(seconds / DT))):
        for c, veh in zip(cars, vehicles, strict=True):
            if c.script is not None:
                veh.action = {"steering": 0.0, "acceleration": c.script(k * DT, veh.speed)}
        road.act()
        road.step(DT)
        record()
    return _traj(rec)


def highway_env_mobil_inputs(cars: list[Car], ego: int, new_lane: int) -> tuple[bool, float, float]:
    """highway-env's own MOBIL verdict, incentive and new follower's predicted accel, at t = 0."""
    net = RoadNetwork.straight_road_network(lanes=max(c.lane for c in cars) + 1, speed_limit=None)
    road = Road(network=net, np_random=np.random.RandomState(0))
    vehicles = []
    for c in cars:
        pos = net.get_lane(("0", "1", c.lane)).position(c.s, 0.0)
        veh = IDMVehicle(
            road, pos, heading=0.0, speed=c.v, target_speed=c.v0, enable_lane_change=False
        )
        road.vehicles.append(veh)
        vehicles.append(veh)
    me = vehicles[ego]
    lane_index = ("0", "1", new_lane)
    new_lead, new_foll = road.neighbour_vehicles(me, lane_index)
    old_lead, _ = road.neighbour_vehicles(me)
    incentive = me.acceleration(me, new_lead) - me.acceleration(me, old_lead)  # politeness 0
    return bool(me.mobil(lane_index)), float(incentive), float(me.acceleration(new_foll, me))


# ------------------------------------------------------------------------------------ our side
def _in_lane(d: float, lane: int) -> bool:
    return abs(d - lane * LANE_W) <= 0.5 * LANE_W + 1.0


def run_ours(
    cars: list[Car], seconds: float, *, bumper_gap: bool = False, projected_closing: bool = False
) -> Traj:
    """Our pure functions on the same states.

    ``bumper_gap``: our world's gap convention (bumper to bumper, s0 = 5 m) instead of the exact
    mapping. ``projected_closing``: highway-env's closing speed (projected on the heading), to
    show that it explains the lane-change difference.
    """
    n = len(cars)
    s = np.array([c.s for c in cars])
    d = np.array([c.lane * LANE_W for c in cars], dtype=np.float64)
    psi = np.zeros(n)
    v = np.array([c.v for c in cars], dtype=np.float64)
    length = np.full(n, LENGTH)
    target = np.array([c.lane for c in cars])
    timer = np.array([c.timer for c in cars])
    s0 = P["s0_bumper_m"] if bumper_gap else P["s0_centre_m"]
    decisions: list[Decision] = []

    def leader(i: int, lane: int) -> int | None:
        ahead = [j for j in range(n) if j != i and _in_lane(d[j], lane) and s[j] >= s[i]]
        return min(ahead, key=lambda j: s[j]) if ahead else None

    def follower(i: int, lane: int) -> int | None:
        behind = [j for j in range(n) if j != i and _in_lane(d[j], lane) and s[j] < s[i]]
        return max(behind, key=lambda j: s[j]) if behind else None

    def idm(
        i: int | None, lead: int | None, lead_s: float | None = None, lead_v: float | None = None
    ) -> float:
        """IDM acceleration of i behind ``lead`` (0 for no vehicle, as highway-env's MOBIL)."""
        if i is None:
            return 0.0
        if lead is not None:
            lead_s, lead_v = s[lead], v[lead]
        if lead_s is None or lead_v is None:
            gap, closing = drivers.NO_LEADER_GAP_M, 0.0
        else:
            gap = lead_s - s[i] - (LENGTH if bumper_gap else 0.0)
            closing = v[i] - lead_v * (
                math.cos(psi[i] - psi[lead]) if projected_closing and lead is not None else 1.0
            )
        a = idm_accel(
            np.array(v[i]),
            np.array(cars[i].v0),
            np.array(gap),
            np.array(closing),
            np.array(P["a_max"]),
            np.array(P["b_comf"]),
            np.array(s0),
            np.array(P["t_headway"]),
        )
        return float(a)

    rec: dict[str, list[list[float]]] = {"s": [], "d": [], "v": [], "target": []}

    def record() -> None:
        for key, arr in (("s", s), ("d", d), ("v", v), ("target", target)):
            rec[key].append([float(x) for x in arr])

    record()
    for k in range(int(round(seconds / DT))):
        t = k * DT
        accel = np.zeros(n)
        for i, c in enumerate(cars):
            if c.script is not None:
                accel[i] = c.script(t, float(v[i]))
                continue
            lane_now = int(round(d[i] / LANE_W))
            if c.mobil and target[i] == lane_now and timer[i] > P["lane_change_delay_s"]:
                timer[i] = 0.0
                lanes = int(max(x.lane for x in cars)) + 1
                for new in (lane_now - 1, lane_now + 1):
                    if not 0 <= new < lanes or v[i] < 1.0:
                        continue
                    old_lead, old_foll = leader(i, lane_now), follower(i, lane_now)
                    new_lead, new_foll = leader(i, new), follower(i, new)
                    a_nf_after = idm(new_foll, i)
                    wants, adv = mobil_wants_change(
                        np.array(idm(i, old_lead)),
                        np.array(idm(i, new_lead)),
                        np.array(idm(new_foll, new_lead)),
                        np.array(a_nf_after),
                        np.array(idm(old_foll, i)),
                        np.array(idm(old_foll, old_lead)),
                        np.array(P["politeness"]),
                        np.array(P["b_safe"]),
                        np.array(P["a_gain"]),
                    )
                    decisions.append(Decision(t, i, new, bool(wants), float(adv), a_nf_after))
                    if wants:
                        target[i] = new
            a = idm(i, leader(i, lane_now))
            if target[i] != lane_now:  # changing lanes: mind the leaders of both lanes
                a = min(a, idm(i, leader(i, int(target[i]))))
            accel[i] = a  # idm_accel already clips to +/- ACCEL_LIMIT, as highway-env's act()
        steer = steer_to_offset(d, psi, v, target * LANE_W, np.zeros(n), length)
        s, d, psi, v = bicycle_step(s, d, psi, v, accel, steer, length, np.zeros(n), DT)
        timer += DT
        record()
    return _traj(rec, decisions)


def max_dev(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)))


# --------------------------------------------------------------------------------- situations
def brake(t_brake: float, decel: float, v_end: float) -> ScriptFn:
    """Cruise, then brake at ``decel`` from ``t_brake`` down to exactly ``v_end``, then cruise."""

    def script(t: float, v: float) -> float:
        if t < t_brake - 1e-9:
            return 0.0
        return -min(decel, (v - v_end) / DT)

    return script


def equilibrium_centre_gap(v: float, v0: float) -> float:
    """highway-env's steady-state centre-to-centre gap at speed v behind a leader at v."""
    return (P["s0_centre_m"] + v * P["t_headway"]) / math.sqrt(1.0 - (v / v0) ** P["delta"])


# highway-env only sees a vehicle as on a lane for longitudinal positions >= -LENGTH (its lanes
# start at x = 0), so every situation starts 200 m down the road.
X0 = 200.0
FREE_ROAD = [Car(s=X0, lane=0, v=20.0, v0=30.0)]
APPROACH = [Car(s=X0, lane=0, v=28.0, v0=30.0), Car(s=X0 + 80.0, lane=0, v=20.0, v0=20.0)]
HARD_BRAKE = [
    Car(s=X0, lane=0, v=25.0, v0=30.0),
    Car(s=X0 + equilibrium_centre_gap(25.0, 30.0), lane=0, v=25.0, script=brake(2.0, 6.0, 5.0)),
]
HARD_STOP = [HARD_BRAKE[0], Car(s=HARD_BRAKE[1].s, lane=0, v=25.0, script=brake(2.0, 6.0, 0.0))]
# (d) ego in lane 1 behind a slow leader, lane 0 free but for a car far behind: change.
OVERTAKE = [
    Car(s=X0, lane=1, v=25.0, v0=30.0, mobil=True),
    Car(s=X0 + 60.0, lane=1, v=20.0, v0=20.0),
    Car(s=X0 - 100.0, lane=0, v=25.0, v0=25.0),
]
# (e) as (d) but a faster car 53 m behind in lane 0 would have to brake at ~3.5 m/s^2 > b_safe.
UNSAFE = [
    Car(s=X0, lane=1, v=25.0, v0=30.0, mobil=True),
    Car(s=X0 + 60.0, lane=1, v=20.0, v0=20.0),
    Car(s=X0 - 53.0, lane=0, v=27.0, v0=27.0),
]


# ------------------------------------------------------------------------------------- tests
def test_parameters_we_hard_code_are_highway_envs() -> None:
    assert P["delta"] == drivers.IDM_DELTA
    assert P["accel_limit"] == drivers.ACCEL_LIMIT
    assert P["tau_lateral_s"] == drivers.TAU_LATERAL_S
    assert P["tau_heading_s"] == drivers.TAU_HEADING_S
    assert P["max_steer_rad"] == pytest.approx(drivers.MAX_STEER_RAD)
    assert P["s0_centre_m"] == P["s0_bumper_m"] + LENGTH


def test_a_free_road_acceleration_matches() -> None:
    ours, ref = run_ours(FREE_ROAD, 20.0), run_highway_env(FREE_ROAD, 20.0)
    assert max_dev(ours.v, ref.v) <= FOLLOW_SPEED_TOL_MPS
    assert max_dev(ours.s, ref.s) <= FOLLOW_POSITION_TOL_M
    assert ref.v[0, 0] == 20.0 and np.all(np.diff(ref.v[:, 0]) > 0)  # the situation is what it says
    assert ref.v[-1, 0] == pytest.approx(30.0, abs=0.05)


def test_b_approach_to_a_slower_leader_matches_to_steady_state() -> None:
    ours, ref = run_ours(APPROACH, 30.0), run_highway_env(APPROACH, 30.0)
    assert max_dev(ours.v, ref.v) <= FOLLOW_SPEED_TOL_MPS
    gap_ours, gap_ref = ours.s[:, 1] - ours.s[:, 0], ref.s[:, 1] - ref.s[:, 0]
    assert max_dev(gap_ours, gap_ref) <= FOLLOW_POSITION_TOL_M
    assert ref.v[-1, 0] == pytest.approx(20.0, abs=0.01)  # steady state reached
    assert gap_ref[-1] == pytest.approx(equilibrium_centre_gap(20.0, 30.0), abs=0.1)


def test_c_leader_braking_hard_matches() -> None:
    ours, ref = run_ours(HARD_BRAKE, 20.0), run_highway_env(HARD_BRAKE, 20.0)
    assert max_dev(ours.v, ref.v) <= FOLLOW_SPEED_TOL_MPS
    assert max_dev(ours.s[:, 1] - ours.s[:, 0], ref.s[:, 1] - ref.s[:, 0]) <= FOLLOW_POSITION_TOL_M
    assert ref.v[-1, 1] == 5.0 and np.min(ref.v[:, 0]) < 5.0  # the follower had to brake below it
    assert np.min(ref.s[:, 1] - ref.s[:, 0]) > LENGTH


def test_c_leader_braking_to_a_standstill_matches_until_highway_env_reverses() -> None:
    ours, ref = run_ours(HARD_STOP, 20.0), run_highway_env(HARD_STOP, 20.0)
    gap_ours, gap_ref = ours.s[:, 1] - ours.s[:, 0], ref.s[:, 1] - ref.s[:, 0]
    k = int(np.argmax(ref.v[:, 0] < 0.0))  # highway-env's first negative speed
    assert k > 0 and np.min(ours.v) >= 0.0  # structural: it reverses, we do not
    assert max_dev(ours.v[:k], ref.v[:k]) <= FOLLOW_SPEED_TOL_MPS
    assert max_dev(gap_ours[:k], gap_ref[:k]) <= FOLLOW_POSITION_TOL_M
    assert max_dev(ours.v, ref.v) <= STANDSTILL_SPEED_TOL_MPS
    assert max_dev(gap_ours, gap_ref) <= STANDSTILL_GAP_TOL_M
    assert np.min(gap_ref) > LENGTH and np.min(gap_ours) > LENGTH


def test_d_mobil_overtakes_a_slow_leader_and_lane_change_matches() -> None:
    wants_ref, incentive_ref, nf_ref = highway_env_mobil_inputs(OVERTAKE, ego=0, new_lane=0)
    ours, ref = run_ours(OVERTAKE, 10.0), run_highway_env(OVERTAKE, 10.0)
    first = ours.decisions[0]
    assert (first.t, first.lane) == (0.0, 0)
    assert first.wants and wants_ref
    assert first.advantage == pytest.approx(incentive_ref, abs=MOBIL_ACCEL_TOL)
    assert first.new_follower_after == pytest.approx(nf_ref, abs=MOBIL_ACCEL_TOL)
    assert ref.target[1, 0] == 0 and ours.target[1, 0] == 0  # both start the change at t = 0
    assert np.array_equal(ours.target, ref.target)  # and make the same later decisions (stay)
    assert max_dev(ours.d, ref.d) <= LANE_CHANGE_LATERAL_TOL_M
    assert max_dev(ours.v, ref.v) <= LANE_CHANGE_SPEED_TOL_MPS
    assert max_dev(ours.s, ref.s) <= LANE_CHANGE_POSITION_TOL_M
    assert ref.d[0, 0] == 4.0 and abs(ref.d[-1, 0]) < 0.01  # the change completed


def test_d_difference_is_the_projected_closing_speed() -> None:
    ours = run_ours(OVERTAKE, 10.0, projected_closing=True)
    ref = run_highway_env(OVERTAKE, 10.0)
    # with highway-env's projection only the no-leader term is left: car-following tolerances
    assert max_dev(ours.d, ref.d) <= 1e-5  # measured 4.2e-7 m
    assert max_dev(ours.v, ref.v) <= FOLLOW_SPEED_TOL_MPS
    assert max_dev(ours.s, ref.s) <= FOLLOW_POSITION_TOL_M


def test_e_mobil_refuses_an_unsafe_change() -> None:
    wants_ref, incentive_ref, nf_ref = highway_env_mobil_inputs(UNSAFE, ego=0, new_lane=0)
    ours, ref = run_ours(UNSAFE, 10.0), run_highway_env(UNSAFE, 10.0)
    first = ours.decisions[0]
    assert not wants_ref and not first.wants
    # refused for safety, not for lack of incentive: the new follower would brake beyond b_safe
    assert incentive_ref > P["a_gain"] and first.advantage == pytest.approx(
        incentive_ref, abs=MOBIL_ACCEL_TOL
    )
    assert nf_ref < -P["b_safe"] and first.new_follower_after == pytest.approx(
        nf_ref, abs=MOBIL_ACCEL_TOL
    )
    # it stays (every later decision agrees too) and the rest is car following
    assert np.all(ref.target[:, 0] == 1) and np.array_equal(ours.target, ref.target)
    assert max_dev(ours.d, ref.d) == 0.0
    assert max_dev(ours.v, ref.v) <= FOLLOW_SPEED_TOL_MPS
    assert max_dev(ours.s, ref.s) <= FOLLOW_POSITION_TOL_M


def test_bumper_gap_convention_differs_by_a_bounded_amount() -> None:
    """Our world's bumper gap with s0 = 5 m is close to, not the same as, highway-env's IDM."""
    ours, ref = run_ours(APPROACH, 30.0, bumper_gap=True), run_highway_env(APPROACH, 30.0)
    gap_ours, gap_ref = ours.s[:, 1] - ours.s[:, 0], ref.s[:, 1] - ref.s[:, 0]
    dev = max_dev(gap_ours, gap_ref)
    assert 0.1 < dev <= BUMPER_CONVENTION_GAP_TOL_M  # a real difference, of the stated size
    assert max_dev(ours.v, ref.v) <= BUMPER_CONVENTION_SPEED_TOL_MPS
    # steady state: ours keeps (s0 + vT)/sqrt(1-(v/v0)^4) bumper to bumper, i.e. a shorter gap
    steady_ref = equilibrium_centre_gap(20.0, 30.0) - LENGTH
    steady_ours = (P["s0_bumper_m"] + 20.0 * P["t_headway"]) / math.sqrt(1.0 - (20.0 / 30.0) ** 4)
    assert gap_ref[-1] - LENGTH == pytest.approx(steady_ref, abs=0.2)
    assert gap_ours[-1] - LENGTH == pytest.approx(steady_ours, abs=0.2)


def test_measure_highway_env_reports_positive_rates() -> None:
    r = measure_highway_env(seconds=1.0)
    assert set(r) == {
        "env_id",
        "decisions_per_s",
        "vehicle_steps_per_s",
        "vehicles",
        "sim_steps_per_decision",
        "seconds",
    }
    assert r["env_id"] == "highway-fast-v0"
    assert r["sim_steps_per_decision"] == 5  # simulation_frequency 5 Hz / policy_frequency 1 Hz
    assert r["vehicles"] >= 2
    for key in ("decisions_per_s", "vehicle_steps_per_s", "seconds"):
        assert math.isfinite(r[key]) and r[key] > 0
    assert r["vehicle_steps_per_s"] == pytest.approx(
        r["decisions_per_s"] * 5 * r["vehicles"], rel=1e-6
    )
