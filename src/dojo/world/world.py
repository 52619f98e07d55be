"""The batched world: W independent traffic worlds stepped together as arrays.

Each world has one ego (slot 0) whose acceleration and steering come from outside, human-driven
traffic (IDM + MOBIL with reaction delays and lapses), static obstacles, and timed hazards from
its scenario. A world's evolution depends only on its own (family, seed): it is the same alone or
in any batch, and any subset of worlds can be reset while the others go on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dojo.errors import DojoConfigError
from dojo.world import actions
from dojo.world import rng as crng
from dojo.world.actions import COMMAND_GAIN, Command, EgoAction, MetaAction
from dojo.world.collisions import collisions, off_road
from dojo.world.drivers import steer_to_offset
from dojo.world.dynamics import DT_S, bicycle_step
from dojo.world.perception import Perception, perceive, take, wrap
from dojo.world.road import Roads, ring_mod
from dojo.world.scenarios import (
    FAMILIES,
    MAX_HAZARDS,
    WINDOW_AHEAD_M,
    WINDOW_BEHIND_M,
    Hazard,
    Scenario,
    check_family,
    check_seed,
    generate,
    slots_needed,
)
from dojo.world.traffic import (
    DECISION_STEPS,
    WAKE_TTC_S,
    LaneChoice,
    deciding_slots,
    follow_accel,
    mobil,
)
from dojo.world.vehicles import Kind, Vehicles

# bumped whenever a change makes a (family, seed) evolve differently: a drive log records it, and
# re-simulating a log (dojo.eval.resim) needs the world that wrote it
WORLD_VERSION = 1
EGO_ACCEL_RANGE = (-8.0, 4.0)  # [m/s^2] what the ego's actuators can do
EGO_STEER_LIMIT = 0.5  # [rad]
CUT_IN_TAU_S = 0.35  # lateral time constant of an aggressive cut-in [s]
MAX_DELAY_STEPS = 16
RECYCLE_STEPS = 5
ALL = slice(None)  # every vehicle slot (EGO: the ego's)


@dataclass
class StepResult:
    """What happened in one step; arrays (W,)."""

    ego_collision: np.ndarray  # bool: the ego hit something or left the road this step
    ego_ttc_s: np.ndarray  # time-to-collision of the ego after the step [s] (inf: none)
    critical: np.ndarray  # bool: ego collision or ego TTC under the critical threshold
    collisions: np.ndarray  # (W, V) bool: vehicles that collided this step


def _stack_vehicles(parts: Sequence[Vehicles], v_max: int) -> Vehicles:
    out = Vehicles.empty(len(parts), v_max)
    for w, part in enumerate(parts):
        out.assign(np.array([w]), part)
    return out


class World:
    """W worlds, one per (family, seed).

    >>> world = World(["cut_in"] * 4, seeds=[0, 1, 2, 3])
    >>> result = world.step(world.expert_action())
    """

    def __init__(
        self,
        families: str | Sequence[str],
        seeds: Sequence[int],
        ttc_critical_s: float = 1.5,
        max_vehicles: int | None = None,
    ) -> None:
        seeds = list(seeds)
        if len(seeds) == 0:
            raise DojoConfigError("A world batch needs at least one seed; got none.")
        fams = [families] * len(seeds) if isinstance(families, str) else list(families)
        if len(fams) != len(seeds):
            raise DojoConfigError(
                f"Got {len(fams)} families for {len(seeds)} seeds; give one family or one per seed."
            )
        if not ttc_critical_s > 0:
            raise DojoConfigError(f"ttc_critical_s={ttc_critical_s!r} must be positive.")
        scenarios = [
            generate(check_family(f), check_seed(s)) for f, s in zip(fams, seeds, strict=True)
        ]
        # room for any scenario of these families, so resets never need to grow the arrays
        need = max(slots_needed(f) for f in set(fams))
        self.max_vehicles = max_vehicles or need
        if self.max_vehicles < need:
            raise DojoConfigError(
                f"max_vehicles={max_vehicles} is below the {need} slots these scenarios need."
            )
        self.ttc_critical_s = float(ttc_critical_s)
        n = len(scenarios)
        self.families = np.array(fams, dtype=object)
        self.seeds = np.array(seeds, dtype=np.int64)
        self.roads = Roads.stack([sc.road for sc in scenarios])
        self.vehicles = _stack_vehicles([sc.vehicles for sc in scenarios], self.max_vehicles)
        self.step_count = np.zeros(n, dtype=np.int64)
        self.command = np.zeros(n, dtype=np.int64)
        self._alloc_hazards(n)
        self._cmd_history = np.zeros((n, self.max_vehicles, MAX_DELAY_STEPS), dtype=np.float64)
        self._ramp_share = np.zeros(n)
        self._cut_in_tau = np.zeros((n, self.max_vehicles))
        self._forced_accel = np.zeros((n, self.max_vehicles))
        self._forced_left_s = np.zeros((n, self.max_vehicles))
        self._stream = np.array([FAMILIES.index(f) for f in fams], dtype=np.int64)
        self._load(np.arange(n), scenarios)

    # ----------------------------------------------------------------- setup
    def _alloc_hazards(self, n: int) -> None:
        shape = (n, MAX_HAZARDS)
        self.hazard_time_s = np.full(shape, np.inf)
        self.hazard_kind = np.zeros(shape, dtype=np.int64)
        self.hazard_actor = np.full(shape, -1, dtype=np.int64)
        self.hazard_strength = np.zeros(shape)
        self.hazard_duration_s = np.zeros(shape)

    def _load(self, idx: np.ndarray, scenarios: Sequence[Scenario]) -> None:
        self.roads.assign(idx, Roads.stack([sc.road for sc in scenarios]))
        self.vehicles.assign(
            idx, _stack_vehicles([sc.vehicles for sc in scenarios], self.max_vehicles)
        )
        self.hazard_time_s[idx] = np.inf
        self.hazard_kind[idx] = Hazard.NONE
        self.hazard_actor[idx] = -1
        self.hazard_strength[idx] = 0.0
        self.hazard_duration_s[idx] = 0.0
        for row, sc in zip(idx, scenarios, strict=True):
            k = len(sc.hazards.time_s)
            self.hazard_time_s[row, :k] = sc.hazards.time_s
            self.hazard_kind[row, :k] = sc.hazards.kind
            self.hazard_actor[row, :k] = sc.hazards.actor
            self.hazard_strength[row, :k] = sc.hazards.strength
            self.hazard_duration_s[row, :k] = sc.hazards.duration_s
            self._ramp_share[row] = sc.ramp_share
        self.step_count[idx] = 0
        self.command[idx] = Command.KEEP_LANE
        self._cmd_history[idx] = 0.0
        self._cut_in_tau[idx] = 0.0
        self._forced_accel[idx] = 0.0
        self._forced_left_s[idx] = 0.0
        cached: Perception | None = getattr(self, "_perception", None)
        if cached is not None and len(idx) < self.num_worlds:
            cached.assign(idx, perceive(self.roads.take(idx), self.vehicles.take(idx)))
        else:
            self._perception: Perception | None = None

    def reset(
        self,
        worlds: np.ndarray | Sequence[int],
        seeds: Sequence[int],
        families: Sequence[str] | None = None,
    ) -> None:
        """Start new scenarios in ``worlds`` (others are untouched)."""
        idx = np.asarray(worlds, dtype=np.int64).reshape(-1)
        seeds = list(seeds)
        if len(seeds) != len(idx) or (families is not None and len(families) != len(idx)):
            raise DojoConfigError(
                f"Resetting {len(idx)} worlds needs {len(idx)} seeds (and families); got {len(seeds)}."
            )
        if len(idx) and (
            idx.min() < 0 or idx.max() >= self.num_worlds or len(set(idx.tolist())) != len(idx)
        ):
            raise DojoConfigError(
                f"worlds={idx.tolist()!r} must be distinct indices in [0, {self.num_worlds})."
            )
        if len(idx) == 0:
            return
        fams = list(families) if families is not None else list(self.families[idx])
        scenarios = [
            generate(check_family(f), check_seed(s)) for f, s in zip(fams, seeds, strict=True)
        ]
        need = max(sc.vehicles.shape[1] for sc in scenarios)
        if need > self.max_vehicles:
            raise DojoConfigError(
                f"max_vehicles={self.max_vehicles} is below the {need} slots of the new scenarios; "
                "build the World with every family it will run, or a larger max_vehicles."
            )
        self.families[idx] = fams
        self.seeds[idx] = list(seeds)
        self._stream[idx] = [FAMILIES.index(f) for f in fams]
        self._load(idx, scenarios)

    def start_from(self, w: int, vehicles: Vehicles, step_count: int) -> None:
        """World ``w`` goes on from a given state (a logged scene): ``vehicles`` (1, <= V) at
        drive step ``step_count``, no scheduled hazards, every driver attentive with no
        pending reaction (a scene records positions and speeds, not what a driver is about to
        do). Its road and seed stay, so its random draws and route are those of its seed.
        """
        if not 0 <= w < self.num_worlds:
            raise DojoConfigError(f"w={w!r} must be a world index in [0, {self.num_worlds}).")
        if vehicles.shape[0] != 1 or vehicles.shape[1] > self.max_vehicles:
            raise DojoConfigError(
                f"A start state needs one world of at most {self.max_vehicles} vehicles; got "
                f"shape {vehicles.shape}."
            )
        if step_count < 0:
            raise DojoConfigError(f"step_count={step_count!r} must be >= 0.")
        idx = np.array([w])
        self.vehicles.assign(idx, vehicles)
        self.hazard_time_s[idx] = np.inf
        self.hazard_kind[idx] = Hazard.NONE
        self.hazard_actor[idx] = -1
        self.step_count[idx] = step_count
        self.command[idx] = Command.KEEP_LANE
        self._cmd_history[idx] = 0.0
        self._cut_in_tau[idx] = 0.0
        self._forced_accel[idx] = 0.0
        self._forced_left_s[idx] = 0.0
        self._perception = None

    # ------------------------------------------------------------ properties
    @property
    def num_worlds(self) -> int:
        return len(self.seeds)

    @property
    def time_s(self) -> np.ndarray:
        """(W,) time since each world's reset [s]."""
        return self.step_count * DT_S

    @property
    def perception(self) -> Perception:
        if self._perception is None:
            self._perception = perceive(self.roads, self.vehicles)
        return self._perception

    def _uniform(self, stream: int, n: int) -> np.ndarray:
        return crng.uniform(self.seeds * 8 + self._stream, self.step_count, stream, n)

    # ---------------------------------------------------------------- drivers
    # Each driver reads the world and returns an EgoAction; only ``step`` changes the world.
    def expert_action(self, ego: EgoAction | None = None) -> EgoAction:
        """The human-driver model driving the ego with perfect perception (no delay, no lapses).

        It follows the route command: CHANGE_LEFT/RIGHT and TAKE_EXIT restrict MOBIL to that side
        (and drop its incentive threshold), KEEP_LANE lets it overtake as a human would. ``ego``:
        decide from that action's lane target and target speed instead of the ego's own.
        """
        return actions.expert_action(self, ego)

    def naive_action(self) -> EgoAction:
        """The naive driver: hold the current speed, keep the lane."""
        return actions.naive_action(self)

    def lane_shift_action(self, accel_mps2: np.ndarray, shift: np.ndarray) -> EgoAction:
        """Acceleration ``accel_mps2`` (W,) and the lane controller heading ``shift`` lanes over.

        ``shift`` (W,): lanes to the left (+) or right (-) of the ego's current lane, rounded
        (|shift| < 0.5 keeps the lane; one lane at most). A lane that is not open there (off the
        road, a dropped stretch) is not taken: the ego keeps its lane.
        """
        return actions.lane_shift_action(self, accel_mps2, shift)

    def meta_action(self, action: np.ndarray) -> EgoAction:
        """Discrete meta-actions (W,): see :class:`MetaAction`."""
        return actions.meta_action(self, action)

    def raw_action(self, accel_mps2: np.ndarray, steer_rad: np.ndarray) -> EgoAction:
        """Acceleration [m/s^2] and steering [rad] (W,) from outside; the lane target is kept."""
        return actions.raw_action(self, accel_mps2, steer_rad)

    def lane_steer(self, slots: slice, target_lane: np.ndarray | None = None) -> np.ndarray:
        """(W, k) steering of the lane controller for the vehicles in ``slots`` (a slice).

        ``target_lane`` (W, k): the lanes to steer to (default the drivers' own target lanes).
        """
        veh = self.vehicles
        target = veh.target_lane[:, slots] if target_lane is None else target_lane
        d_target = target * self.roads.lane_width[:, None]
        tau_cut = self._cut_in_tau[:, slots]
        tau = np.where(tau_cut > 0, tau_cut, 0.6)
        return steer_to_offset(
            veh.d[:, slots],
            veh.psi[:, slots],
            veh.v[:, slots],
            d_target,
            self.perception.curvature[:, slots],
            veh.length[:, slots],
            tau,
        )

    # ------------------------------------------------------------------ step
    def step(
        self,
        action: EgoAction | np.ndarray | None = None,
        ego_steer: np.ndarray | None = None,
        human: np.ndarray | None = None,
    ) -> StepResult:
        """Advance every world by DT_S with the ego's action: an :class:`EgoAction` (W,) or arrays.

        ``step(action)`` applies what a driver method returned, lane target and target speed
        included; ``step(accel, steer)`` takes the acceleration [m/s^2] and steering [rad] (W,)
        alone (the ego's lane target stays). ``None`` for both lets the ego's own human driver
        drive: the same IDM + MOBIL model as the traffic, with that driver's reaction delay and
        attention lapses (see :meth:`expert_action` for the model with perfect perception).
        ``human`` (W,) bool lets the human drive only those worlds (the action is ignored there),
        as a fleet with some cars in manual mode needs. The human follows the route command.
        """
        human_ego = action is None and ego_steer is None
        if human is not None:
            human = np.asarray(human)
            if human.shape != (self.num_worlds,) or human.dtype != np.bool_:
                raise DojoConfigError(
                    f"human must be a bool array of shape ({self.num_worlds},); got {human!r}."
                )
        human_rows = np.full(self.num_worlds, human_ego) if human is None or human_ego else human
        ego = None if human_ego else self._checked_action(action, ego_steer)
        veh, per, roads = self.vehicles, self.perception, self.roads
        if ego is not None:  # the driver state the action carries (perception saw the old one)
            veh.target_lane[:, 0] = np.where(human_rows, veh.target_lane[:, 0], ego.target_lane)
            veh.v0[:, 0] = np.where(human_rows, veh.v0[:, 0], ego.v0_mps)
        self._trigger_hazards(per)

        accel, steer = self._traffic_controls(per, human_rows)
        if ego is not None:
            accel[:, 0] = np.where(
                human_rows, accel[:, 0], np.clip(ego.accel_mps2, *EGO_ACCEL_RANGE)
            )
            steer[:, 0] = np.where(
                human_rows, steer[:, 0], np.clip(ego.steer_rad, -EGO_STEER_LIMIT, EGO_STEER_LIMIT)
            )
        moving = veh.active & veh.driven & ~veh.crashed
        accel = np.where(moving, accel, 0.0)
        steer = np.where(moving, steer, 0.0)
        kappa = per.curvature
        s, d, psi, v = bicycle_step(
            veh.s, veh.d, veh.psi, veh.v, accel, steer, veh.length, kappa, DT_S
        )
        veh.s = np.where(moving, ring_mod(s, roads.length[:, None]), veh.s)
        veh.d = np.where(moving, d, veh.d)
        veh.psi = np.where(moving, psi, veh.psi)
        veh.v = np.where(moving, v, veh.v)
        veh.accel, veh.steer = accel, steer
        self.step_count += 1
        self._forced_left_s = np.maximum(self._forced_left_s - DT_S, 0.0)

        per = perceive(roads, veh)
        hit = collisions(roads, veh, per.leader, per.gap_m) | off_road(roads, veh)
        new_hit = hit & ~veh.crashed
        veh.crashed |= hit
        veh.v = np.where(veh.crashed & (np.arange(veh.shape[1]) > 0), 0.0, veh.v)  # wrecks stop
        self._recycle(per, due=self.step_count % RECYCLE_STEPS == 0)
        self._perception = per
        ego_hit = new_hit[:, 0]
        ttc = per.ttc_s[:, 0]
        return StepResult(
            ego_collision=ego_hit,
            ego_ttc_s=ttc,
            critical=ego_hit | (ttc < self.ttc_critical_s),
            collisions=new_hit,
        )

    def _checked_action(
        self, action: EgoAction | np.ndarray | None, ego_steer: np.ndarray | None
    ) -> EgoAction:
        if isinstance(action, EgoAction):
            if ego_steer is not None:
                raise DojoConfigError("Give an EgoAction alone, or acceleration and steering.")
            ego = action
        elif action is None or ego_steer is None:
            raise DojoConfigError(
                "Give both ego_accel and ego_steer, or neither (the human driver drives)."
            )
        else:
            ego = self.raw_action(action, ego_steer)
        n = self.num_worlds
        a, st = ego.accel_mps2, ego.steer_rad
        if a.shape != (n,) or st.shape != (n,):
            raise DojoConfigError(
                f"Ego actions must have shape ({n},); got accel {a.shape}, steer {st.shape}."
            )
        if ego.target_lane.shape != (n,) or ego.v0_mps.shape != (n,):
            raise DojoConfigError(
                f"An EgoAction's target_lane and v0_mps must have shape ({n},); got "
                f"{ego.target_lane.shape} and {ego.v0_mps.shape}."
            )
        if not (np.isfinite(a).all() and np.isfinite(st).all() and np.isfinite(ego.v0_mps).all()):
            raise DojoConfigError("Ego actions contain NaN or infinity.")
        return ego

    def _traffic_controls(
        self, per: Perception, human_ego: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Every driver's (accel, steer) (W, V); ``human_ego`` (W,): worlds whose ego the human drives."""
        veh = self.vehicles
        nw, nv = veh.shape
        a_cmd = follow_accel(veh, per)
        # lane decisions: each driver once per DECISION_PERIOD_S, spread over the steps
        slots = deciding_slots(self.step_count, nv, DECISION_STEPS)
        choice = self._human_lane_choice(per, a_cmd, slots, human_ego)
        own = np.minimum(slots, nv - 1)
        settled = take(veh.target_lane, own) == take(per.index.lane, own)
        change = (
            (slots < nv)
            & ((slots > 0) | human_ego[:, None])
            & settled
            & (take(veh.lapse_left, own) <= 0.0)
        )
        veh.target_lane[np.nonzero(change)[0], own[change]] = choice.target[change]
        # hazards override the drivers
        forced = self._forced_left_s > 0.0
        a_cmd = np.where(forced, self._forced_accel, a_cmd)
        # attention lapses: start at a per-driver rate, freeze the command, end early on danger
        # separate streams per quantity, so a draw never depends on the batch's slot count
        u_start, u_len = self._uniform(1, nv), self._uniform(3, nv)
        start = (veh.lapse_left <= 0.0) & (u_start < veh.lapse_rate * DT_S)
        veh.lapse_left = np.where(start, 0.5 + 1.5 * u_len, np.maximum(veh.lapse_left - DT_S, 0.0))
        veh.lapse_left = np.where(per.ttc_s < WAKE_TTC_S, 0.0, veh.lapse_left)
        lapsed = (veh.lapse_left > 0.0) & ~forced
        a_cmd = np.where(lapsed, veh.accel, a_cmd)
        # reaction delay: the pedal follows the command issued reaction_steps ago
        slot = self.step_count % MAX_DELAY_STEPS
        self._cmd_history[np.arange(nw), :, slot] = a_cmd
        delayed_slot = (slot[:, None] - veh.reaction_steps) % MAX_DELAY_STEPS
        # the (W, V, D) history seen as (W * V, D): one flat take of each driver's delayed command
        delayed_flat = delayed_slot + MAX_DELAY_STEPS * np.arange(nw * nv).reshape(nw, nv)
        accel = self._cmd_history.ravel().take(delayed_flat)
        accel = np.where(forced, self._forced_accel, accel)
        steer = self.lane_steer(ALL)
        return accel, steer

    def _human_lane_choice(
        self, per: Perception, a_cmd: np.ndarray, slots: np.ndarray, human_ego: np.ndarray
    ) -> LaneChoice:
        """MOBIL for the deciding drivers; a human-driven ego with a route command keeps to its side."""
        veh = self.vehicles
        commanded = human_ego & (self.command != Command.KEEP_LANE)
        if not commanded.any():
            return mobil(self.roads, veh, per, a_cmd, slots)
        cmd = self.command[:, None]
        ego_decides = (slots == 0) & commanded[:, None]  # (W, K)
        allowed = np.ones(slots.shape + (2,), dtype=bool)
        allowed[..., 0] = ~(ego_decides & (cmd == Command.CHANGE_LEFT))  # the right option
        allowed[..., 1] = ~(
            ego_decides & ((cmd == Command.CHANGE_RIGHT) | (cmd == Command.TAKE_EXIT))
        )
        own = np.minimum(slots, veh.shape[1] - 1)
        # the commanded ego changes as soon as it is safe: its threshold, the others' their own
        gain = np.where((own == 0) & commanded[:, None], COMMAND_GAIN, take(veh.a_gain, own))
        return mobil(self.roads, veh, per, a_cmd, slots, allowed, a_gain=gain)

    def _trigger_hazards(self, per: Perception) -> None:
        due = (self.hazard_time_s <= self.time_s[:, None] + 1e-9) & (
            self.hazard_kind != Hazard.NONE
        )
        if not due.any():
            return
        veh = self.vehicles
        for w, h in zip(*np.nonzero(due), strict=True):
            kind = self.hazard_kind[w, h]
            if kind == Hazard.HARD_BRAKE:
                leader = per.leader[w, 0]
                if leader != 0 and per.gap_m[w, 0] < 80.0 and veh.driven[w, leader]:
                    self._forced_accel[w, leader] = -self.hazard_strength[w, h]
                    self._forced_left_s[w, leader] = self.hazard_duration_s[w, h]
            elif kind == Hazard.CUT_IN:
                self._start_cut_in(w, h)
            self.hazard_kind[w, h] = Hazard.NONE  # each event fires once

    def _start_cut_in(self, w: int, h: int) -> None:
        """Put the cutter just ahead of the ego's front bumper, slower, and send it into the ego's lane."""
        veh = self.vehicles
        c = self.hazard_actor[w, h]
        ego_lane = int(np.floor(veh.d[w, 0] / self.roads.lane_width[w] + 0.5))
        gap = self.hazard_duration_s[w, h]
        dv = self.hazard_strength[w, h]
        # The cutter has been pacing the ego in the next lane; it is repositioned at the gap the
        # scenario asks for only if that spot is free, else the event is skipped.
        s_new = veh.s[w, 0] + 0.5 * (veh.length[w, 0] + veh.length[w, c]) + gap
        lane_c = int(np.floor(veh.d[w, c] / self.roads.lane_width[w] + 0.5))
        others = veh.active[w] & (np.arange(veh.shape[1]) != c) & (np.arange(veh.shape[1]) != 0)
        ds = (veh.s[w] - s_new + 0.5 * self.roads.length[w]) % self.roads.length[
            w
        ] - 0.5 * self.roads.length[w]
        lanes = np.floor(veh.d[w] / self.roads.lane_width[w] + 0.5)
        blocked = others & (np.abs(ds) < 15.0) & ((lanes == lane_c) | (lanes == ego_lane))
        if blocked.any() or abs(lane_c - ego_lane) != 1:
            return
        veh.s[w, c] = s_new % self.roads.length[w]
        veh.v[w, c] = max(veh.v[w, 0] - dv, 0.0)
        veh.v0[w, c] = veh.v[w, c]
        veh.target_lane[w, c] = ego_lane
        self._cut_in_tau[w, c] = CUT_IN_TAU_S

    def _recycle(self, per: Perception, due: np.ndarray) -> None:
        """Keep traffic density around the ego constant: move vehicles that left the window to its other end.

        Checked every RECYCLE_STEPS steps (``due``, (W,)): the window's ends are far from the ego.
        """
        if not due.any():
            return
        veh = self.vehicles
        ds_ego = wrap(
            veh.s - veh.s[:, :1], self.roads.length[:, None]
        )  # (W, V) relative to the ego
        movable = veh.active & veh.driven & (np.arange(veh.shape[1]) > 0)
        fell_behind = movable & (ds_ego < -WINDOW_BEHIND_M)
        ran_ahead = movable & (ds_ego > WINDOW_AHEAD_M)
        crashed_far = (
            veh.active & veh.crashed & (np.abs(ds_ego) > 150.0) & (np.arange(veh.shape[1]) > 0)
        )
        go = (fell_behind | ran_ahead | crashed_far) & due[:, None]
        if not go.any():
            return
        nv = veh.shape[1]
        u_pos, u_lane, u_ramp = self._uniform(2, nv), self._uniform(4, nv), self._uniform(5, nv)
        # one vehicle per world and step, so two recycled vehicles never land on the same spot
        first = np.argmax(go, axis=1)
        w = np.nonzero(go.any(axis=1))[0]
        i = first[w]
        s_ego = veh.s[w, 0]
        ahead_target = WINDOW_AHEAD_M - 20.0 * u_pos[w, i]
        behind_target = -WINDOW_BEHIND_M + 20.0 * u_pos[w, i]
        s_new = s_ego + np.where(fell_behind[w, i] | crashed_far[w, i], ahead_target, behind_target)
        lanes = self.roads.lanes[w]
        lanes = np.where(
            veh.kind[w, i] == Kind.TRUCK, np.minimum(lanes, 2), lanes
        )  # trucks keep right
        lane = np.minimum((u_lane[w, i] * lanes).astype(np.int64), lanes - 1)
        use_ramp = (u_ramp[w, i] < self._ramp_share[w]) & self.roads.lane_open(
            np.full_like(lane, -1), s_new, w
        )
        lane = np.where(use_ramp, -1, lane)
        lane = np.where(self.roads.lane_open(lane, s_new, w), lane, self.roads.lanes[w] - 1)
        d_new = lane * self.roads.lane_width[w]
        # only into a free spot: nobody within 30 m in that lane
        rel = veh.s[w] - s_new[:, None]
        length = self.roads.length[w][:, None]
        rel = rel - length * np.floor(rel / length + 0.5)
        near = veh.active[w] & (np.abs(rel) < 50.0) & (np.abs(veh.d[w] - d_new[:, None]) < 3.0)
        near[np.arange(len(w)), i] = False
        ok = ~near.any(axis=1)
        w, i = w[ok], i[ok]
        veh.s[w, i] = ring_mod(s_new[ok], self.roads.length[w])
        veh.d[w, i] = d_new[ok]
        veh.psi[w, i] = 0.0
        veh.target_lane[w, i] = lane[ok]
        veh.crashed[w, i] = False
        veh.v[w, i] = np.where(veh.v[w, i] < 5.0, 0.8 * veh.v0[w, i], veh.v[w, i])
        self._cut_in_tau[w, i] = 0.0
        self._forced_left_s[w, i] = 0.0


__all__ = [
    "DECISION_STEPS",
    "Command",
    "DT_S",
    "EGO_ACCEL_RANGE",
    "EgoAction",
    "EGO_STEER_LIMIT",
    "MetaAction",
    "StepResult",
    "World",
]
