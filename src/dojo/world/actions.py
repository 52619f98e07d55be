"""The ego's actions as values: what a driver of the ego wants for one step, and the drivers.

An :class:`EgoAction` holds the controls (acceleration, steering) and the state the ego's lane
controller and speed controller carry into the next step (the lane it heads for, its target
speed). The drivers here (the expert, the naive driver, a lane shift, highway-env's
meta-actions) read a world and never write it; :meth:`dojo.world.world.World.step` applies the
action, so asking a driver what it would do is free of side effects (a shadow prediction, the
safety driver's second opinion).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING

import numpy as np

from dojo.errors import DojoConfigError
from dojo.world.camera import CameraRig
from dojo.world.drivers import ACCEL_LIMIT, speed_to_target
from dojo.world.perception import Perception, perceive
from dojo.world.road import Roads
from dojo.world.traffic import DECISION_STEPS, LaneChoice, follow_accel, mobil
from dojo.world.vehicles import Vehicles
from dojo.world.visibility import visible_objects

if TYPE_CHECKING:
    from dojo.world.world import World

EGO = slice(0, 1)  # the ego's vehicle slot
# MOBIL incentive threshold under a route command [m/s^2]: change as soon as it is safe, even
# into a slower lane (b_safe still guards the new follower)
COMMAND_GAIN = -1.0e3
META_SPEED_STEP_MPS = 5.0
META_SPEED_MAX_MPS = 40.0


class Command(IntEnum):
    """Route command given to the ego driver (human, expert or network)."""

    KEEP_LANE = 0
    CHANGE_LEFT = 1
    CHANGE_RIGHT = 2
    TAKE_EXIT = 3  # head for the rightmost lane (the ring has no off-ramp geometry)


def _frozen(a: np.ndarray, dtype: type) -> np.ndarray:
    # a copy: the value never aliases world state
    out: np.ndarray = np.array(a, dtype=dtype).reshape(-1)
    out.setflags(write=False)
    return out


@dataclass(frozen=True)
class EgoAction:
    """One step of the ego in every world; arrays (W,), read-only copies.

    ``target_lane`` and ``v0_mps`` are the ego driver's state after this decision: ``step``
    writes them to the ego, so a lane the action chose stays chosen in the next step.
    """

    accel_mps2: np.ndarray  # [m/s^2] acceleration (the world clips it to EGO_ACCEL_RANGE)
    steer_rad: np.ndarray  # [rad] front-wheel angle (clipped to EGO_STEER_LIMIT)
    target_lane: np.ndarray  # int: the lane the ego's lane controller heads for
    v0_mps: np.ndarray  # [m/s] the ego driver's target speed

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # a frozen dataclass converts its fields this way
        set_(self, "accel_mps2", _frozen(self.accel_mps2, np.float64))
        set_(self, "steer_rad", _frozen(self.steer_rad, np.float64))
        set_(self, "target_lane", _frozen(self.target_lane, np.int64))
        set_(self, "v0_mps", _frozen(self.v0_mps, np.float64))

    def where(self, mask: np.ndarray, other: EgoAction) -> EgoAction:
        """``other`` in the worlds of ``mask`` (W,) bool, this action elsewhere."""
        return EgoAction(
            np.where(mask, other.accel_mps2, self.accel_mps2),
            np.where(mask, other.steer_rad, self.steer_rad),
            np.where(mask, other.target_lane, self.target_lane),
            np.where(mask, other.v0_mps, self.v0_mps),
        )


class MetaAction(IntEnum):
    """Discrete actions built on acceleration and steering (highway-env's DiscreteMetaAction set).

    LANE_LEFT / LANE_RIGHT retarget the lane controller one lane over; FASTER / SLOWER change the
    target speed by 5 m/s; IDLE keeps both targets. Steering always comes from the lane controller.
    """

    LANE_LEFT = 0
    IDLE = 1
    LANE_RIGHT = 2
    FASTER = 3
    SLOWER = 4


def raw_action(world: World, accel_mps2: np.ndarray, steer_rad: np.ndarray) -> EgoAction:
    """Controls from outside; the ego's lane target and target speed stay as they are."""
    veh = world.vehicles
    return EgoAction(accel_mps2, steer_rad, veh.target_lane[:, 0], veh.v0[:, 0])


def expert_action(world: World, ego: EgoAction | None = None) -> EgoAction:
    """The human-driver model driving the ego with perfect perception (see ``World.expert_action``).

    ``ego``: decide from that action's lane target and target speed instead of the world's own
    (the safety driver taking over from what the network was doing).
    """
    return _drive(world, world.vehicles, world.perception, ego)


def careful_action(world: World, rig: CameraRig, ego: EgoAction | None = None) -> EgoAction:
    """The expert's IDM + MOBIL decision made only from what ``rig`` can show the ego.

    Every object the visibility rule (:mod:`dojo.world.visibility`) hides is taken off the road
    (a view of the vehicles with ``active`` False for it) and the rest is perceived afresh, so
    no leader, gap or lane change of this decision depends on an object no camera shows.
    """
    seen = visible_objects(world, rig)
    seen[:, 0] = True  # the ego knows itself
    veh = dataclasses.replace(world.vehicles, active=world.vehicles.active & seen)
    return _drive(world, veh, perceive(world.roads, veh), ego)


def _drive(world: World, veh: Vehicles, per: Perception, ego: EgoAction | None) -> EgoAction:
    """IDM for the speed and MOBIL for the lane of the ego, on vehicles ``veh`` as ``per`` sees
    them (the world's own, or a view of them)."""
    if ego is None:
        target_now, v0 = veh.target_lane[:, 0], veh.v0[:, 0]
    else:
        target_now, v0 = ego.target_lane, ego.v0_mps
        ego_v0 = veh.v0.copy()
        ego_v0[:, 0] = v0
        veh = dataclasses.replace(veh, v0=ego_v0)  # a view of the drivers, the world untouched
    decide = (world.step_count % DECISION_STEPS) == 0
    if decide.any():  # MOBIL needs everyone's current acceleration
        a_follow = follow_accel(veh, per)
        settled = target_now == per.index.lane[:, 0]
        target = np.where(
            decide & settled, _expert_lane_choice(world, veh, per, a_follow), target_now
        )
    else:
        a_follow = follow_accel(veh, per, EGO)
        target = target_now
    return EgoAction(a_follow[:, 0], world.lane_steer(EGO, target[:, None])[:, 0], target, v0)


def _expert_lane_choice(
    world: World, veh: Vehicles, per: Perception, a_follow: np.ndarray
) -> np.ndarray:
    """The expert's MOBIL lane for the ego (W,), restricted to the route command's side."""
    return command_lane_choice(world.roads, veh, per, a_follow, world.command)


def command_lane_choice(
    roads: Roads, veh: Vehicles, per: Perception, a_follow: np.ndarray, command: np.ndarray
) -> np.ndarray:
    """The ego's (slot 0) MOBIL lane (W,) under route ``command`` (W,): CHANGE_LEFT/RIGHT and
    TAKE_EXIT restrict it to that side and drop its incentive threshold; KEEP_LANE lets it
    overtake as a human would. ``a_follow`` (W, V): everyone's current IDM acceleration."""
    nw = len(command)
    allowed = np.ones((nw, 1, 2), dtype=bool)
    allowed[:, 0, 0] = command != Command.CHANGE_LEFT  # the right option
    allowed[:, 0, 1] = (command != Command.CHANGE_RIGHT) & (command != Command.TAKE_EXIT)
    gain = np.where(command == Command.KEEP_LANE, veh.a_gain[:, 0], COMMAND_GAIN)[:, None]
    slots = np.zeros((nw, 1), dtype=np.int64)
    choice: LaneChoice = mobil(roads, veh, per, a_follow, slots, allowed, a_gain=gain)
    return choice.target[:, 0]


def naive_action(world: World) -> EgoAction:
    """Hold the current speed, keep the lane."""
    lane = world.perception.index.lane[:, 0]
    steer = world.lane_steer(EGO, lane[:, None])[:, 0]
    return EgoAction(np.zeros(world.num_worlds), steer, lane, world.vehicles.v0[:, 0])


def lane_shift_action(world: World, accel_mps2: np.ndarray, shift: np.ndarray) -> EgoAction:
    """``accel_mps2``, and the lane controller steering ``shift`` lanes over (see ``World``)."""
    n = world.num_worlds
    shift = np.asarray(shift, dtype=np.float64).reshape(-1)
    if shift.shape != (n,) or not np.isfinite(shift).all():
        raise DojoConfigError(f"Lane shifts must be {n} finite numbers; got shape {shift.shape}.")
    veh = world.vehicles
    lane = world.perception.index.lane[:, 0]
    target = lane + np.clip(np.rint(shift), -1, 1).astype(np.int64)
    open_ = world.roads.lane_open(target, veh.s[:, 0], slice(None)) & (target >= 0)
    target = np.where(open_, target, lane)
    steer = world.lane_steer(EGO, target[:, None])[:, 0]
    return EgoAction(accel_mps2, steer, target, veh.v0[:, 0])


def meta_action(world: World, action: np.ndarray) -> EgoAction:
    """Discrete meta-actions (W,), see :class:`MetaAction`."""
    action = np.asarray(action, dtype=np.int64).reshape(-1)
    if action.shape != (world.num_worlds,) or ((action < 0) | (action > 4)).any():
        raise DojoConfigError(
            f"Meta-actions must be {world.num_worlds} integers in 0..4; got {action!r}."
        )
    veh = world.vehicles
    lane = world.perception.index.lane[:, 0]
    target = veh.target_lane[:, 0]
    target = np.where(action == MetaAction.LANE_LEFT, lane + 1, target)
    target = np.where(action == MetaAction.LANE_RIGHT, lane - 1, target)
    target = np.where(
        world.roads.lane_open(target, veh.s[:, 0], slice(None)) & (target >= 0), target, lane
    )
    v_target = veh.v0[:, 0] + np.select(
        [action == MetaAction.FASTER, action == MetaAction.SLOWER],
        [META_SPEED_STEP_MPS, -META_SPEED_STEP_MPS],
        0.0,
    )
    v0 = np.clip(v_target, 0.0, META_SPEED_MAX_MPS)
    accel = np.clip(speed_to_target(veh.v[:, 0], v0), -ACCEL_LIMIT, ACCEL_LIMIT)
    return EgoAction(accel, world.lane_steer(EGO, target[:, None])[:, 0], target, v0)
