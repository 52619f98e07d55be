"""Human drivers of the background traffic (and the expert ego): IDM + MOBIL over a batch.

Lane changes are decided once per ``DECISION_PERIOD_S`` (as highway-env's LANE_CHANGE_DELAY),
longitudinal control every step. Human variability: commands reach the pedals after a per-driver
reaction delay, and attention lapses freeze the last command until the lapse ends or the gap
ahead becomes alarming.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dojo.world.drivers import NO_LEADER_GAP_M, idm_accel, mobil_wants_change
from dojo.world.dynamics import DT_S
from dojo.world.perception import INF, Perception, bumper_gap, take, wrap
from dojo.world.road import Roads
from dojo.world.vehicles import Vehicles

DECISION_PERIOD_S = 1.0
DECISION_STEPS = round(DECISION_PERIOD_S / DT_S)  # world steps between a driver's decisions
WAKE_TTC_S = 3.0  # a lapse ends when time-to-collision drops below this
# Drivers leave a lane that ends within this distance [m] (ramp, dropped lane) with extra urge.
LANE_END_LOOKAHEAD_M = 400.0
LANE_END_URGE = 1.0  # [m/s^2] added to the incentive to leave an ending lane


def follow_accel(veh: Vehicles, per: Perception, slots: slice = slice(None)) -> np.ndarray:
    """(W, k) IDM acceleration behind the current leader, for the vehicles in ``slots``."""
    gap = per.gap_m[:, slots]
    gap = np.where(np.isfinite(gap), gap, NO_LEADER_GAP_M)
    return idm_accel(
        veh.v[:, slots],
        veh.v0[:, slots],
        gap,
        per.closing_mps[:, slots],
        veh.a_max[:, slots],
        veh.b_comf[:, slots],
        veh.s0[:, slots],
        veh.t_headway[:, slots],
    )


def _idm_behind(
    veh: Vehicles, f: np.ndarray, gap: np.ndarray, v_lead: np.ndarray, has: np.ndarray
) -> np.ndarray:
    """IDM acceleration of vehicles f (W, V) behind a leader at ``gap`` with speed ``v_lead``."""
    vf = take(veh.v, f)
    return idm_accel(
        vf,
        take(veh.v0, f),
        np.where(has, gap, NO_LEADER_GAP_M),
        np.where(has, vf - v_lead, 0.0),
        take(veh.a_max, f),
        take(veh.b_comf, f),
        take(veh.s0, f),
        take(veh.t_headway, f),
    )


@dataclass
class LaneChoice:
    target: np.ndarray  # (W, K) int: lane chosen (== current lane when staying)
    advantage: np.ndarray  # (W, K) [m/s^2]


def deciding_slots(step_count: np.ndarray, num_slots: int, period: int) -> np.ndarray:
    """(W, ceil(V / period)) slots whose lane decision falls on this step of each world.

    Slot i of world w decides when (step + i) % period == 0, so each step carries 1/period of
    the decisions and every driver still decides once a period. Entries past the last slot
    repeat the last slot; callers mask them with ``< num_slots`` of the raw value.
    """
    k = -(-num_slots // period)
    return ((-step_count) % period)[:, None] + period * np.arange(k)[None, :]


def mobil(
    roads: Roads,
    veh: Vehicles,
    per: Perception,
    a_now: np.ndarray,
    slots: np.ndarray,
    allowed: np.ndarray | None = None,
    a_gain: np.ndarray | None = None,
) -> LaneChoice:
    """MOBIL lane choice for the vehicles ``slots`` (W, K): best of left/right if safe and worth it.

    ``a_now`` (W, V) is every vehicle's current IDM acceleration. ``allowed`` (W, K, 2)
    optionally restricts the [right, left] options (route commands). ``a_gain`` (W, K): the
    deciding drivers' incentive thresholds [m/s^2] (default their own; a route command lowers it).
    """
    idx = per.index
    nw, nv = veh.shape
    k = slots.shape[1]
    wi = np.arange(nw)[:, None]
    own = np.minimum(slots, nv - 1)
    lane = take(idx.lane, own)
    driven_all = veh.driven & veh.active
    a_now_all = np.where(driven_all, a_now, 0.0)

    # One query per (driver, lane) for the own lane and both neighbours, laid out (W, 3K):
    # [own lane | lane to the right | lane to the left].
    def rep(a: np.ndarray) -> np.ndarray:
        return np.concatenate([a, a, a], axis=1)

    q_own = rep(own)
    q_lane = np.concatenate([lane, lane - 1, lane + 1], axis=1)
    q_s = take(veh.s, q_own)
    ahead, behind = idx.neighbours(q_lane, rep(take(idx.s_mod, own)), exclude=q_own)
    lane_ends = np.where(lane_ends_ahead(roads, q_s, q_lane), LANE_END_URGE, 0.0)

    # Old follower: nearest vehicle behind in the own lane; after the change it follows our leader.
    old_f = behind[:, :k]
    has_old_f = old_f >= 0
    old_f = np.where(has_old_f, old_f, own)
    my_leader = take(per.leader, own)
    has_leader = my_leader != own
    gap_f_to_leader = np.where(
        has_leader, bumper_gap(veh, roads, old_f, my_leader, take(per.gap_scale, old_f)), INF
    )
    a_old_f_after = _idm_behind(veh, old_f, gap_f_to_leader, take(veh.v, my_leader), has_leader)
    d_old = np.where(
        has_old_f & take(driven_all, old_f), a_old_f_after - take(a_now_all, old_f), 0.0
    )

    # Both candidate lanes at once, (W, 2K): [right | left].
    def two(a: np.ndarray) -> np.ndarray:
        return np.concatenate([a, a], axis=1)

    me, new_lane, s_me = q_own[:, k:], q_lane[:, k:], q_s[:, k:]
    lead, foll = ahead[:, k:], behind[:, k:]
    has_lead, has_foll = lead >= 0, foll >= 0
    lead, foll = np.where(has_lead, lead, me), np.where(has_foll, foll, me)
    lead_gap = np.where(has_lead, bumper_gap(veh, roads, me, lead, take(per.gap_scale, me)), INF)
    foll_gap = np.where(has_foll, bumper_gap(veh, roads, foll, me, take(per.gap_scale, foll)), INF)
    # a neighbour found by wrapping round the ring is far away, not alongside
    half_ring = 0.5 * roads.length[:, None]
    lead_gap = np.where(lead_gap > half_ring, INF, lead_gap)
    foll_gap = np.where(foll_gap > half_ring, INF, foll_gap)
    has_lead &= np.isfinite(lead_gap)
    has_foll &= np.isfinite(foll_gap)
    a_self_after = _idm_behind(veh, me, lead_gap, take(veh.v, lead), has_lead)
    a_f_after = _idm_behind(veh, foll, foll_gap, take(veh.v, me), has_foll)
    foll_driven = has_foll & take(driven_all, foll)
    a_f_now = np.where(foll_driven, take(a_now_all, foll), 0.0)
    a_f_after = np.where(foll_driven, a_f_after, 0.0)
    overlap = (has_lead & (lead_gap < 0.5)) | (has_foll & (foll_gap < 0.5))
    # someone next to us is already moving into that lane: MOBIL's gaps predate their move
    lane_of_new = per.index.lane
    for other, gap in ((lead, lead_gap), (foll, foll_gap)):
        moving_in = (take(veh.target_lane, other) == new_lane) & (
            take(lane_of_new, other) != new_lane
        )
        overlap |= moving_in & (gap < CONFLICT_RANGE_M)
    wants, adv = mobil_wants_change(
        two(take(a_now, own)),
        a_self_after + two(lane_ends[:, :k]) - lane_ends[:, k:],
        a_f_now,
        a_f_after,
        np.zeros((nw, 2 * k)),
        two(d_old),
        take(veh.politeness, me),
        take(veh.b_safe, me),
        take(veh.a_gain, me) if a_gain is None else two(a_gain),
    )
    open_new = roads.lane_open(new_lane, s_me, wi) & roads.lane_open(new_lane, s_me + 60.0, wi)
    open_new &= new_lane >= 0  # nobody changes onto the ramp
    ok = wants & open_new & ~overlap & two(take(driven_all, own) & (slots < nv))
    if allowed is not None:
        ok &= np.concatenate([allowed[:, :, 0], allowed[:, :, 1]], axis=1)
    adv = np.where(ok, adv, -INF)
    left_better = adv[:, k:] > adv[:, :k]
    best_adv = np.where(left_better, adv[:, k:], adv[:, :k])
    best_target = np.where(left_better, new_lane[:, k:], new_lane[:, :k])
    best_target = np.where(np.isfinite(best_adv), best_target, lane)
    best_target = _resolve_conflicts(roads, veh, own, lane, best_target, best_adv)
    return LaneChoice(target=best_target, advantage=best_adv)


CONFLICT_RANGE_M = 30.0


def _resolve_conflicts(
    roads: Roads,
    veh: Vehicles,
    own: np.ndarray,
    lane: np.ndarray,
    target: np.ndarray,
    adv: np.ndarray,
) -> np.ndarray:
    """Two drivers deciding now to change into the same lane side by side: only the keener one goes."""
    k = own.shape[1]
    s_own = take(veh.s, own)
    changing = target != lane
    ds_pair = wrap(s_own[:, None, :] - s_own[:, :, None], roads.length[:, None, None])  # (W, K, K)
    same_target = (
        changing[:, :, None] & changing[:, None, :] & (target[:, :, None] == target[:, None, :])
    )
    order = np.arange(k)
    beaten = (adv[:, None, :] > adv[:, :, None]) | (
        (adv[:, None, :] == adv[:, :, None]) & (order[None, None, :] < order[None, :, None])
    )
    loses = (same_target & (np.abs(ds_pair) < CONFLICT_RANGE_M) & beaten).any(axis=2)
    return np.where(loses, lane, target)


def lane_ends_ahead(roads: Roads, s: np.ndarray, lane: np.ndarray) -> np.ndarray:
    w = np.arange(s.shape[0])[:, None]
    ends = ~roads.lane_open(lane, s + LANE_END_LOOKAHEAD_M, w) | ~roads.lane_open(
        lane, s + 0.5 * LANE_END_LOOKAHEAD_M, w
    )
    return ends | (lane < 0)
