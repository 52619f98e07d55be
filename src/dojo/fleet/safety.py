"""The safety driver of a car in autonomous mode: when it takes over, why, and when it hands back.

It watches what the network is about to do (its acceleration and steering for this step) in
the world as it is, the way a trained safety driver with hands on the wheel does:

- **critical** (a takeover to avoid a collision): the ego's TTC is under the threshold, or
  keeping the network's acceleration would close the gap to the leader within the reaction
  time, or its steering would leave the road within the reaction time;
- **non-critical**: ignoring the route command while the expert would have changed lanes,
  straddling a lane line, driving far under the desired speed with a free lane ahead, or
  braking hard with nothing closing in. (Steering is not judged by its lateral acceleration:
  the world's lane controller, the expert's, already swerves briskly in a lane change.)

Control passes to the safety driver ``reaction_s`` after it sees the reason; it then drives (the
human-driver model with perfect perception) for ``hold_s`` and hands back once the situation is
calm. A collision before the hand-over is one the safety driver was too late for.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dojo.fleet.config import SafetyConfig
from dojo.world.world import DT_S, EgoAction, World

# braking hard with the TTC and the time gap to the leader above these has no reason [s]
NO_THREAT_TTC_S = 4.0
NO_THREAT_HEADWAY_S = 2.0


def lateral_preview(world: World, steer: np.ndarray, horizon_s: float) -> np.ndarray:
    """(N,) predicted lateral offset d [m] of each ego after ``horizon_s`` holding ``steer`` [rad]."""
    veh = world.vehicles
    v, psi, d = veh.v[:, 0], veh.psi[:, 0], veh.d[:, 0]
    beta = np.arctan(0.5 * np.tan(steer))
    yaw_rate = v * np.sin(beta) / (0.5 * veh.length[:, 0]) - world.perception.curvature[:, 0] * v
    heading = psi + beta
    return d + v * np.sin(heading) * horizon_s + 0.5 * v * np.cos(heading) * yaw_rate * horizon_s**2


def gap_closes_within(world: World, accel: np.ndarray, horizon_s: float) -> np.ndarray:
    """(N,) the ego, holding ``accel``, would reach its leader (holding its own) within ``horizon_s``."""
    per, veh = world.perception, world.vehicles
    leader = per.leader[:, 0]
    has = leader != 0
    rows = np.arange(world.num_worlds)
    rel_accel = accel - veh.accel[rows, leader]
    t = np.linspace(DT_S, max(horizon_s, DT_S), 8)[:, None]  # (8, 1) sample times
    gap = per.gap_m[:, 0] - per.closing_mps[:, 0] * t - 0.5 * rel_accel * t**2
    return has & (gap <= 0.0).any(axis=0)


@dataclass
class Intervention:
    """One takeover that just started: car, critical or not, and why."""

    car: int
    critical: bool
    reason: str
    upgrade: bool = False  # a non-critical takeover under way that turned critical


@dataclass
class SafetyDriver:
    """Per-car takeover state of a fleet (arrays (N,))."""

    cars: int
    config: SafetyConfig = field(default_factory=SafetyConfig)

    def __post_init__(self) -> None:
        n = self.cars
        self.watching = np.zeros(n, dtype=bool)  # car is in autonomous mode
        self.pending_s = np.full(n, np.inf)  # time left until the safety driver has control [s]
        self.hold_s = np.zeros(n)  # time left of the safety driver's hold [s]
        self.driving = np.zeros(n, dtype=bool)  # the safety driver has control
        self.critical = np.zeros(n, dtype=bool)  # the current intervention is critical
        self.ignored_s = np.zeros(n)  # time the command could have been followed and was not [s]
        self.straddle_s = np.zeros(n)
        self.slow_s = np.zeros(n)
        self.feasible = np.zeros(
            n, dtype=bool
        )  # the expert's last lane decision followed the command

    @property
    def intervening(self) -> np.ndarray:
        """(N,) a takeover is under way (seen, or the safety driver drives)."""
        return self.driving | np.isfinite(self.pending_s)

    def restart(self, cars: np.ndarray) -> None:
        """New drives for ``cars``: the network is engaged, every timer cleared."""
        for a in (self.hold_s, self.ignored_s, self.straddle_s, self.slow_s):
            a[cars] = 0.0
        self.pending_s[cars] = np.inf
        self.driving[cars] = False
        self.critical[cars] = False
        self.feasible[cars] = False

    def assess(
        self,
        world: World,
        proposed: EgoAction,
        direction: np.ndarray,
        expert_target: np.ndarray | None,
    ) -> list[Intervention]:
        """Look at the network's proposed action (N,) before the step; return takeovers that start.

        ``direction`` (N,): +1/-1/0 lane direction of the route command. ``expert_target``: the
        expert's lane choice this step where it made one (decision steps), else None.
        """
        cfg, veh, per = self.config, world.vehicles, world.perception
        accel, steer = proposed.accel_mps2, proposed.steer_rad
        lane = per.index.lane[:, 0]
        if expert_target is not None:
            self.feasible = (expert_target - lane) * direction > 0
        ttc = per.ttc_s[:, 0]
        d_next = lateral_preview(world, steer, cfg.reaction_s + DT_S)
        off_road = ~world.roads.on_road(veh.s[:, 0], d_next)
        reasons_critical = [
            ("ttc_under_threshold", ttc < cfg.ttc_critical_s),
            ("collision_predicted", gap_closes_within(world, accel, cfg.reaction_s + DT_S)),
            ("leaving_road", off_road),
        ]
        # non-critical timers
        heading_lane = world.roads.lane_of(lateral_preview(world, steer, 1.5))
        following = (heading_lane - lane) * direction > 0
        self.ignored_s = np.where(
            (direction != 0) & self.feasible & ~following, self.ignored_s + DT_S, 0.0
        )
        width = world.roads.lane_width
        offset = veh.d[:, 0] - lane * width
        straddling = np.abs(offset) + 0.5 * veh.width[:, 0] > 0.5 * width + 0.3
        self.straddle_s = np.where(straddling, self.straddle_s + DT_S, 0.0)
        headway = per.gap_m[:, 0] / np.maximum(veh.v[:, 0], 1.0)  # [s], inf without a leader
        free = (per.gap_m[:, 0] > cfg.free_gap_m) | ~np.isfinite(per.gap_m[:, 0])
        slow = (veh.v[:, 0] < cfg.slow_share * proposed.v0_mps) & free  # the speed it aims at
        self.slow_s = np.where(slow, self.slow_s + DT_S, 0.0)
        reasons_noncritical = [
            ("ignored_command", self.ignored_s > cfg.command_patience_s),
            ("left_lane", self.straddle_s > cfg.straddle_s),
            ("too_slow", self.slow_s > cfg.slow_s),
            (
                "harsh_braking",
                (accel < -cfg.harsh_brake_mps2)
                & (ttc > NO_THREAT_TTC_S)
                & (headway > NO_THREAT_HEADWAY_S),
            ),
        ]
        engaged = self.watching & ~self.driving
        started: list[Intervention] = []
        crit_reason, crit = _first_reason(reasons_critical)
        non_reason, non = _first_reason(reasons_noncritical)
        fresh = engaged & ~np.isfinite(self.pending_s)
        upgrade = engaged & np.isfinite(self.pending_s) & ~self.critical & crit
        for car in np.nonzero(fresh & (crit | non))[0]:
            is_crit = bool(crit[car])
            started.append(
                Intervention(
                    int(car), is_crit, str(crit_reason[car] if is_crit else non_reason[car])
                )
            )
        for car in np.nonzero(upgrade)[0]:  # a non-critical takeover under way turns critical
            started.append(Intervention(int(car), True, str(crit_reason[car]), upgrade=True))
        new = fresh & (crit | non)
        self.pending_s = np.where(new, cfg.reaction_s, self.pending_s)
        self.critical |= (new | upgrade) & crit
        return started

    def controls_by_safety_driver(self) -> np.ndarray:
        """(N,) cars whose controls the safety driver gives this step (counts the reaction down)."""
        due = np.isfinite(self.pending_s) & (self.pending_s <= 1e-9) & ~self.driving
        self.driving |= due
        self.hold_s = np.where(due, self.config.hold_s, self.hold_s)
        self.pending_s = np.where(
            np.isfinite(self.pending_s) & ~self.driving, self.pending_s - DT_S, self.pending_s
        )
        return self.driving.copy()

    def hand_back(self, world: World) -> np.ndarray:
        """After the step: (N,) cars handed back to the network (their hold is over and all is calm)."""
        cfg, veh, per = self.config, world.vehicles, world.perception
        self.hold_s = np.where(self.driving, self.hold_s - DT_S, self.hold_s)
        lane = per.index.lane[:, 0]
        settled = np.abs(veh.d[:, 0] - lane * world.roads.lane_width) < 0.5
        calm = (per.ttc_s[:, 0] > 2.0 * cfg.ttc_critical_s) & settled
        back = self.driving & (self.hold_s <= 0.0) & calm
        self.driving &= ~back
        self.pending_s[back] = np.inf
        self.critical &= ~back
        for a in (self.ignored_s, self.straddle_s, self.slow_s):
            a[back] = 0.0
        return back


def _first_reason(reasons: list[tuple[str, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """(reason name per car, any reason) from (name, mask) pairs in priority order."""
    n = len(reasons[0][1])
    names = np.full(n, "", dtype=object)
    for name, mask in reversed(reasons):
        names = np.where(mask, name, names)
    return names, names != ""
