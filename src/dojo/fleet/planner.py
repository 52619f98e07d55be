"""Perception -> planner: the ego driven from the seven numbers the perception heads predict.

The planner reads, per car, what :data:`dojo.nets.targets.PLANNER_TARGETS` holds in physical
units (:func:`dojo.nets.planner.decode`: the lead's gap [m] and closing speed [m/s], the inverse
TTC [1/s], the gaps ahead and behind in the next lanes [m]; every gap censored at
``GAP_REACH_M``: "at least 80 m"), the car's own speed, its driver's settings (desired speed,
IDM's a, b, s0, T) and the route command, and nothing else: no map, no other vehicle's state.

* **Speed**: IDM on the predicted lead, with the closing speed the larger of the predicted one
  and gap x inverse TTC (two heads, the more urgent reading wins); a gap at the reach is a free
  road, as the label means it.
* **Lane**: once per decision period, when the last change is complete: a commanded change
  (CHANGE_LEFT / CHANGE_RIGHT / TAKE_EXIT) is taken as soon as the target lane's gaps are
  safe; under KEEP_LANE the planner leaves a lane only to get past a leader far slower than
  it wants to go (a stalled car, the barrier where a lane ends), into the side with the
  larger free gap ahead. "Safe" is a time gap on either side (:class:`PlannerConfig`); the
  planner does not see the other lane's speeds, so it asks more of the gap behind.

Two sources of the numbers make two policies (:mod:`dojo.fleet.policy`): ``planner`` reads
them from the world through the rig's visibility rule, censored as the labels are (the
planner's ceiling: what it does with perfect perception), and ``planner:CHECKPOINT`` from a
``--net perception`` checkpoint (:func:`dojo.fleet.perception_policy`).
"""

from __future__ import annotations

import dataclasses
import weakref
from dataclasses import dataclass

import numpy as np

from dojo.errors import DojoConfigError
from dojo.nets.targets import (
    CLOSING,
    GAP_REACH_M,
    INV_TTC,
    LEAD_GAP,
    PLANNER_TARGETS,
    decode_targets,
    planner_targets,
)
from dojo.validate import number
from dojo.world.actions import Command, EgoAction
from dojo.world.camera import CameraRig
from dojo.world.drivers import NO_LEADER_GAP_M, idm_accel
from dojo.world.dynamics import DT_S
from dojo.world.perception import ego_gaps, perceive
from dojo.world.traffic import DECISION_STEPS, lane_ends_ahead
from dojo.world.visibility import visible_objects
from dojo.world.world import World

_SIDES = {
    1: ("left_ahead_gap_m", "left_behind_gap_m"),
    -1: ("right_ahead_gap_m", "right_behind_gap_m"),
}


@dataclass(frozen=True)
class PlannerConfig:
    """How cautious the planner is; each value checked on construction."""

    free_gap_m: float = 0.95 * GAP_REACH_M  # [m] a predicted gap this long is the free road
    ahead_headway_s: float = 0.6  # [s] gap ahead in the target lane, at the ego's speed
    behind_headway_s: float = 0.8  # [s] gap behind in the target lane, at the ego's speed
    min_side_gap_m: float = 6.0  # [m] the least gap either side, at any speed
    follower_share: float = 0.5  # the unseen follower is taken to drive at least this x v0
    slow_lead_share: float = 0.6  # leave a lane (KEEP_LANE) for a lead slower than this x v0
    slow_lead_gap_m: float = 70.0  # [m] ... once it is this close

    def __post_init__(self) -> None:
        number("free_gap_m", self.free_gap_m, 0.0, GAP_REACH_M, low_open=True)
        for name in ("ahead_headway_s", "behind_headway_s", "min_side_gap_m", "slow_lead_gap_m"):
            number(name, getattr(self, name), 0.0)
        number("slow_lead_share", self.slow_lead_share, 0.0, 1.0)
        number("follower_share", self.follower_share, 0.0, 1.0)


def plan(world: World, seen: np.ndarray, config: PlannerConfig | None = None) -> EgoAction:
    """The ego's action in every world from ``seen`` (W, 7): decoded planner targets."""
    cfg = config or PlannerConfig()
    veh = world.vehicles
    n = world.num_worlds
    seen = np.asarray(seen, dtype=np.float64)
    if seen.shape != (n, len(PLANNER_TARGETS)):
        raise DojoConfigError(f"seen must be ({n}, {len(PLANNER_TARGETS)}); got {seen.shape}.")
    v = veh.v[:, 0]
    v0 = veh.v0[:, 0]
    gap = seen[:, LEAD_GAP]
    lead = gap < cfg.free_gap_m
    closing = np.maximum(seen[:, CLOSING], gap * seen[:, INV_TTC])
    accel = idm_accel(
        v,
        v0,
        np.where(lead, gap, NO_LEADER_GAP_M),
        np.where(lead, closing, 0.0),
        veh.a_max[:, 0],
        veh.b_comf[:, 0],
        veh.s0[:, 0],
        veh.t_headway[:, 0],
    )
    lane = world.perception.index.lane[:, 0]
    target_now = veh.target_lane[:, 0]
    settled = target_now == lane
    decide = settled & ((world.step_count % DECISION_STEPS) == 0)
    shift = np.where(settled, 0, np.sign(target_now - lane))
    side_gap = np.maximum(cfg.min_side_gap_m, 0.0)
    col = {name: i for i, name in enumerate(PLANNER_TARGETS)}

    def safe(side: int) -> np.ndarray:
        ahead, behind = (seen[:, col[k]] for k in _SIDES[side])
        # the follower's speed is not seen: it is taken to be at least a share of v0 (traffic
        # moving past a slow or stopped ego is the case that ends in a rear-end collision)
        v_follower = np.maximum(v, cfg.follower_share * v0)
        return (ahead >= np.maximum(side_gap, cfg.ahead_headway_s * v)) & (
            behind >= np.maximum(side_gap, cfg.behind_headway_s * v_follower)
        )

    command = world.command
    want_left = command == Command.CHANGE_LEFT
    want_right = (command == Command.CHANGE_RIGHT) | (command == Command.TAKE_EXIT)
    keep = command == Command.KEEP_LANE
    slow_lead = lead & (gap <= cfg.slow_lead_gap_m) & (v - closing < cfg.slow_lead_share * v0)
    s_now = veh.s[:, 0]
    ends = lane_ends_ahead(world.roads, s_now[:, None], lane[:, None])[:, 0]
    left_ends, right_ends = (
        lane_ends_ahead(world.roads, s_now[:, None], (lane + d)[:, None])[:, 0] for d in (1, -1)
    )
    left_free, right_free = (seen[:, col[_SIDES[s][0]]] for s in (1, -1))
    left_ok, right_ok = safe(1) & ~left_ends, safe(-1) & ~right_ends
    blocked = keep & (ends | slow_lead)
    better_left, better_right = ends | (left_free > gap), ends | (right_free > gap)
    escape_left = blocked & left_ok & better_left & (~right_ok | (left_free >= right_free))
    escape_right = blocked & right_ok & better_right & ~escape_left
    chosen = np.select(
        [want_left & left_ok, want_right & right_ok, escape_left, escape_right], [1, -1, 1, -1], 0
    )
    shift = np.where(decide, chosen, shift)
    return world.lane_shift_action(accel, shift.astype(np.float64))


class LeadTracker:
    """Object permanence for the lead: a lead that drops out of sight is kept, dead-reckoned.

    The rig draws only its nearest objects, and a car mid-lane-change may lose a stalled lead
    from view while it is still ahead of part of its body; "free road" then means "not seen",
    not "gone". For up to ``keep_s`` after its last sighting, while the ego still overlaps the
    lane it was seen in, a lead that is no longer seen is carried forward at its last closing
    speed; a lead in sight always wins (a carried one would brake for a car that pulled away).

    The tracker also reads the closing speed off the gap's own history: the least-squares slope
    of the last ``history_s`` of sightings of one lead (a jump in the gap starts a new lead's
    history), and where that closing speed means a TTC under ``slope_ttc_s`` the planner gets
    the larger of it and the predicted one. A net
    sees the gap of a stalled car well (its pixels' size and row) but rarely learns the closing
    speed a stalled car has, as few labels hold one; a slope over a second of gaps is a closing
    speed to within a few m/s, and erring high only brakes earlier.

    One tracker serves a fleet (W cars); a car whose drive restarted (step 0) starts afresh.
    """

    def __init__(
        self,
        keep_s: float = 3.0,
        free_gap_m: float = PlannerConfig.free_gap_m,
        history_s: float = 1.5,
        slope: bool = True,
        slope_ttc_s: float = 8.0,
    ) -> None:
        self.keep_s = number("keep_s", keep_s, 0.0)
        self.free_gap_m = free_gap_m
        self.history = max(2, round(number("history_s", history_s, 0.0, low_open=True) / DT_S))
        self.slope = slope
        self.slope_ttc_s = number("slope_ttc_s", slope_ttc_s, 0.0)
        # one track per fleet: a policy object may drive several fleets (the loop's evaluations)
        self._tracks: weakref.WeakKeyDictionary[World, _Track] = weakref.WeakKeyDictionary()

    def update(self, world: World, seen: np.ndarray) -> np.ndarray:
        """``seen`` (W, 7) decoded targets with the lead carried where it went out of sight."""
        n = world.num_worlds
        track = self._tracks.get(world)
        if track is None or len(track.gap) != n:
            track = self._tracks[world] = _Track(
                np.full(n, np.inf),
                np.zeros(n),
                np.zeros(n, np.int64),
                np.zeros(n),
                np.full((n, self.history), np.nan),
            )
        restarted = world.step_count == 0
        track.gap[restarted] = np.inf  # a drive restarted: nothing seen yet
        track.gaps[restarted] = np.nan
        veh = world.vehicles
        width = world.roads.lane_width
        overlaps = np.abs(veh.d[:, 0] - track.lane * width) < 0.5 * (width + veh.width[:, 0])
        carried = track.gap - track.closing * DT_S
        alive = np.isfinite(track.gap) & (track.age_s + DT_S <= self.keep_s) & overlaps
        out = np.array(seen, dtype=np.float64)
        gap = out[:, LEAD_GAP]
        sighted = gap < self.free_gap_m
        use = alive & ~sighted & (carried < self.free_gap_m)
        out[:, LEAD_GAP] = np.where(use, np.maximum(carried, 0.0), gap)
        out[:, CLOSING] = np.where(use, track.closing, out[:, CLOSING])
        out[:, INV_TTC] = np.where(use, 0.0, out[:, INV_TTC])
        if self.slope:
            est = self._slope_closing(track, gap, sighted)
            # only an urgent reading: at a long TTC the slope is mostly the gap's noise
            urgent = est * self.slope_ttc_s > gap
            out[:, CLOSING] = np.where(urgent, np.maximum(out[:, CLOSING], est), out[:, CLOSING])
        # a fresh sighting replaces the track, else it carries on (or ends)
        track.gap = np.where(sighted, gap, np.where(use, carried, np.inf))
        track.closing = np.where(sighted, out[:, CLOSING], track.closing)
        track.lane = np.where(sighted, world.perception.index.lane[:, 0], track.lane)
        track.age_s = np.where(sighted, 0.0, track.age_s + DT_S)
        return out

    def _slope_closing(self, track: _Track, gap: np.ndarray, sighted: np.ndarray) -> np.ndarray:
        """(W,) closing speed [m/s] from the last sightings of the lead (-inf: too few)."""
        last = track.gaps[:, -1]
        # another lead: the gap jumped by more than a quarter (and 3 m) since the last frame
        jumped = ~np.isfinite(last) | (np.abs(gap - last) > 0.25 * np.abs(last) + 3.0)
        track.gaps = np.roll(track.gaps, -1, axis=1)
        track.gaps[jumped] = np.nan
        track.gaps[:, -1] = np.where(sighted, gap, np.nan)
        track.gaps[~sighted] = np.nan
        t = np.arange(self.history) * DT_S  # (N,) [s]
        ok = np.isfinite(track.gaps)
        count = ok.sum(axis=1)
        y = np.where(ok, track.gaps, 0.0)
        tw = np.where(ok, t, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            t_mean = tw.sum(axis=1) / count
            y_mean = y.sum(axis=1) / count
            dt = np.where(ok, t - t_mean[:, None], 0.0)
            slope = (dt * (y - y_mean[:, None])).sum(axis=1) / (dt**2).sum(axis=1)
        enough = count >= max(3, self.history // 2)
        return np.where(enough & np.isfinite(slope), -slope, -np.inf)


@dataclass
class _Track:
    """The lead each car last saw; arrays (W,)."""

    gap: np.ndarray  # [m] carried to now; inf: no track
    closing: np.ndarray  # [m/s] at the last sighting
    lane: np.ndarray  # the ego's lane then
    age_s: np.ndarray  # [s] since the last sighting
    gaps: np.ndarray  # (W, N) the lead's gap at the last N frames [m], oldest first; NaN: unseen


def seen_by_rig(world: World, rig: CameraRig) -> np.ndarray:
    """(W, 7) decoded planner targets of every ego as a perfect perception net would give them:
    the world through ``rig``'s visibility rule, censored at the reach as the labels are."""
    shown = visible_objects(world, rig)
    shown[:, 0] = True
    veh = dataclasses.replace(world.vehicles, active=world.vehicles.active & shown)
    gaps = ego_gaps(world.roads, veh, perceive(world.roads, veh))
    rows = {k: v for k, v in gaps.items() if k != "has_lead"}
    rows["lead_id"] = np.where(gaps["has_lead"], gaps["lead_slot"], -1)
    encoded, _ = planner_targets(rows)
    return decode_targets(encoded)


__all__ = ["LeadTracker", "PlannerConfig", "plan", "seen_by_rig"]
