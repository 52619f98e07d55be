"""Gymnasium environments over the batched world.

:class:`DojoEnv` is one world (W=1) of a scenario family; :class:`DojoVectorEnv` is ``num_envs``
worlds of one family stepped as ONE batched :class:`~dojo.world.world.World` (arrays, no process
per environment). Both share the code below, so environment ``i`` of a vector env follows exactly
the trajectory a :class:`DojoEnv` reset with the same seed follows under the same actions.

Registered ids (on ``import dojo.world``): ``dojo/Highway-v0``, ``dojo/Merge-v0``,
``dojo/LaneDrop-v0``, ``dojo/CutIn-v0``, ``dojo/Stalled-v0``, ``dojo/Dense-v0``; each has
``max_episode_steps = episode_s / DT_S`` (400) and a ``vector_entry_point``, so
``gymnasium.make_vec(id, num_envs=N)`` builds a :class:`DojoVectorEnv`.

Observation ("kinematics"): float32 array (vehicles_count, 7), one row per vehicle, features

    present   1 for a real vehicle, 0 for an empty row (all its features are then 0)
    ds_m      [m] along-road offset from the ego (Frenet s difference, wrapped round the ring)
    dd_m      [m] lateral offset from the ego (Frenet d difference, left positive)
    v_mps     [m/s] speed minus the ego's speed
    psi_rad   [rad] heading minus the ego's heading (both relative to the road), in [-pi, pi)
    length_m  [m] body length
    width_m   [m] body width

Row 0 is the ego itself, with absolute values where the relative ones would be zero: ds_m = 0,
dd_m = the ego's lateral offset from the centre of the rightmost lane (so dd_m / 4 m is its lane;
-4 m is an on-ramp), v_mps = its speed, psi_rad = its heading relative to the road. Rows 1.. are
the other vehicles within ``OBS_RANGE_M`` along the road, nearest first (by Euclidean distance in
(ds, dd)); obstacles (barriers, debris, stalled cars) and wrecks count as vehicles. The frame is
road-aligned and centred on the ego (Frenet differences), not rotated by the ego's own heading.
Every value is clipped into the observation space's bounds.

Actions:
    "continuous"  Box(2,) float32: [acceleration m/s^2 in EGO_ACCEL_RANGE, steering rad in
                  +-EGO_STEER_LIMIT], physical units. Out-of-range values are CLIPPED to the
                  bounds (the world's actuators saturate); NaN, infinity or a wrong shape raise
                  DojoConfigError.
    "meta"        Discrete(5): a :class:`~dojo.world.world.MetaAction` (LANE_LEFT, IDLE,
                  LANE_RIGHT, FASTER, SLOWER), turned into controls by the world's lane and
                  speed controllers. Anything but an integer in 0..4 raises DojoConfigError.

Reward per step, in [-1, 1]:
    r = clip(v_ego * cos(psi_ego) / REWARD_SPEED_MPS, 0, 1)          speed progress
        - CRITICAL_PENALTY  if the ego's time-to-collision < ttc_critical_s (1.5 s)
    r = -1 on the step the ego collides (or leaves the road).

Episode end: ``terminated`` when the ego collides; ``truncated`` once the episode has run
``episode_s`` (or ``max_episode_steps`` steps, whichever is earlier).

Info: ``ttc_s`` (the ego's time-to-collision [s], inf when none), ``critical`` (collision or TTC
under the threshold), ``collision``, ``family``, ``scenario_seed``.

Seeds: ``reset(seed=k)`` plays scenario ``(family, k)`` (k in [0, 2**31); held-out seeds are
accepted here, :func:`~dojo.world.scenarios.check_split` is for data generation) and seeds the
env's ``np_random`` with k; ``reset()`` without a seed draws the next scenario seed from
``np_random`` within TRAIN_SEEDS. So after ``reset(seed=k)`` the sequence of scenarios is a fixed
function of k and the episode counter.

Vector env: ``reset(seed=k)`` gives env i the seed ``k + i`` (a list gives one seed per env), as
gymnasium's SyncVectorEnv does. Autoreset mode is NEXT_STEP (gymnasium's default): the step that
ends an env's episode returns its final observation with terminated/truncated set; on the next
``step`` that env ignores its action, starts its next scenario (``World.reset`` of that world
only) and returns the first observation with reward 0 and terminated = truncated = False. Its new
scenario seed is the next draw of its own generator (seeded with its reset seed), exactly the
scenario a DojoEnv would play on ``reset()``. ``reset(options={"reset_mask": mask})`` resets only
the masked envs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.error import ResetNeeded
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from dojo.errors import DojoConfigError
from dojo.validate import positive, whole
from dojo.world.scenarios import (
    FAMILIES,
    MAX_SEED,
    TRAIN_SEEDS,
    check_family,
    check_seed,
    slots_needed,
)
from dojo.world.world import DT_S, EGO_ACCEL_RANGE, EGO_STEER_LIMIT, EgoAction, MetaAction, World

ENV_IDS = {
    "highway": "dojo/Highway-v0",
    "merge": "dojo/Merge-v0",
    "lane_drop": "dojo/LaneDrop-v0",
    "cut_in": "dojo/CutIn-v0",
    "stalled": "dojo/Stalled-v0",
    "dense": "dojo/Dense-v0",
}
EPISODE_S = 40.0  # [s] default episode length
ACTION_TYPES = ("continuous", "meta")
OBSERVATIONS = ("kinematics",)
OBS_FEATURES = ("present", "ds_m", "dd_m", "v_mps", "psi_rad", "length_m", "width_m")
OBS_RANGE_M = 200.0  # [m] vehicles further along the road than this are not observed
_OBS_LOW = np.array([0.0, -OBS_RANGE_M, -30.0, -60.0, -np.pi, 0.0, 0.0], dtype=np.float32)
_OBS_HIGH = np.array([1.0, OBS_RANGE_M, 30.0, 60.0, np.pi, 20.0, 5.0], dtype=np.float32)
REWARD_SPEED_MPS = 30.0  # [m/s] speed that earns the full progress reward
CRITICAL_PENALTY = 0.2  # reward lost on a step with TTC under the critical threshold
COLLISION_REWARD = -1.0


def max_vehicle_slots(family: str) -> int:
    """Most vehicle slots any scenario of ``family`` needs (ego + traffic + obstacles).

    Environments build their World with this many slots whatever the seeds, so a world's
    trajectory does not depend on the other worlds of its batch and autoreset never runs out.
    """
    return slots_needed(family)


@dataclass(frozen=True)
class EnvConfig:
    """Validated settings shared by :class:`DojoEnv` and :class:`DojoVectorEnv`."""

    family: str = "highway"
    episode_s: float = EPISODE_S  # [s]
    action_type: str = "continuous"  # 'continuous' or 'meta'
    observation: str = "kinematics"
    vehicles_count: int = 10  # rows of the observation, the ego included
    ttc_critical_s: float = 1.5  # [s]
    max_episode_steps: int | None = None  # a second cap on the episode length [steps]

    def __post_init__(self) -> None:
        check_family(self.family)
        if self.action_type not in ACTION_TYPES:
            raise DojoConfigError(
                f"action_type={self.action_type!r} is not supported; choose one of: {', '.join(ACTION_TYPES)}."
            )
        if self.observation not in OBSERVATIONS:
            raise DojoConfigError(
                f"observation={self.observation!r} is not supported; choose one of: {', '.join(OBSERVATIONS)}."
            )
        for name in ("episode_s", "ttc_critical_s"):  # [s]
            positive(name, getattr(self, name))
        whole("vehicles_count", self.vehicles_count, 1)  # the ego is one
        if self.max_episode_steps is not None:
            whole("max_episode_steps", self.max_episode_steps, 1)

    @property
    def episode_steps(self) -> int:
        steps = max(1, math.ceil(self.episode_s / DT_S - 1e-9))
        return steps if self.max_episode_steps is None else min(steps, int(self.max_episode_steps))


def observation_space(config: EnvConfig) -> spaces.Box:
    """Box (vehicles_count, 7) float32; see the module docstring for the features."""
    n = config.vehicles_count
    return spaces.Box(np.tile(_OBS_LOW, (n, 1)), np.tile(_OBS_HIGH, (n, 1)), dtype=np.float32)


def action_space(config: EnvConfig) -> spaces.Space[Any]:
    if config.action_type == "meta":
        return spaces.Discrete(len(MetaAction))
    low = np.array([EGO_ACCEL_RANGE[0], -EGO_STEER_LIMIT], dtype=np.float32)
    high = np.array([EGO_ACCEL_RANGE[1], EGO_STEER_LIMIT], dtype=np.float32)
    return spaces.Box(low, high, dtype=np.float32)


def kinematics(world: World, count: int) -> np.ndarray:
    """(W, count, 7) float32 ego-centred kinematics of every world; see the module docstring."""
    veh, roads = world.vehicles, world.roads
    nw, nv = veh.shape
    length = roads.length[:, None]
    ds = veh.s - veh.s[:, :1]
    ds = ds - length * np.floor(ds / length + 0.5)  # (W, V) wrapped into [-L/2, L/2)
    dd = veh.d - veh.d[:, :1]
    visible = veh.active & (np.abs(ds) <= OBS_RANGE_M)
    visible[:, 0] = False
    key = np.where(visible, np.hypot(ds, dd), np.inf)
    k = min(count - 1, nv)
    pick = np.argsort(key, axis=1, kind="stable")[:, :k]  # (W, k) nearest first
    w = np.arange(nw)[:, None]
    present = np.isfinite(key[w, pick])
    others = np.stack(
        [
            present.astype(np.float64),
            ds[w, pick],
            dd[w, pick],
            veh.v[w, pick] - veh.v[:, :1],
            _wrap_angle(veh.psi[w, pick] - veh.psi[:, :1]),
            veh.length[w, pick],
            veh.width[w, pick],
        ],
        axis=-1,
    )  # (W, k, 7)
    others = np.where(present[:, :, None], others, 0.0)
    ego = np.stack(
        [
            np.ones(nw),
            np.zeros(nw),
            veh.d[:, 0],
            veh.v[:, 0],
            _wrap_angle(veh.psi[:, 0]),
            veh.length[:, 0],
            veh.width[:, 0],
        ],
        axis=-1,
    )[:, None, :]  # (W, 1, 7)
    obs = np.zeros((nw, count, len(OBS_FEATURES)), dtype=np.float32)
    obs[:, :1] = ego
    obs[:, 1 : 1 + k] = others
    return np.clip(obs, _OBS_LOW, _OBS_HIGH)


def _wrap_angle(a: np.ndarray) -> np.ndarray:
    return np.mod(a + np.pi, 2.0 * np.pi) - np.pi


class _Core:
    """The shared machinery: a World of W worlds of one family, actions in, (obs, reward, ...) out."""

    def __init__(self, config: EnvConfig, num_worlds: int) -> None:
        self.config = config
        self.num_worlds = num_worlds
        self.world: World | None = None
        self.max_vehicles = max_vehicle_slots(config.family)

    def start(self, worlds: np.ndarray, scenario_seeds: list[int]) -> None:
        if self.world is None:
            if len(worlds) != self.num_worlds:
                raise ResetNeeded("Reset every environment before resetting a subset of them.")
            self.world = World(
                self.config.family, scenario_seeds, self.config.ttc_critical_s, self.max_vehicles
            )
        else:
            self.world.reset(worlds, scenario_seeds)

    def require_world(self) -> World:
        if self.world is None:
            raise ResetNeeded("Call reset() before step().")
        return self.world

    def controls(self, action: Any, idle: np.ndarray) -> EgoAction:
        """The ego's action (W,) for a batch of actions; worlds in ``idle`` get a neutral action."""
        world = self.require_world()
        n = self.num_worlds
        if self.config.action_type == "meta":
            raw = np.asarray(action)
            if raw.size != n or not (
                np.issubdtype(raw.dtype, np.integer)
                or (np.issubdtype(raw.dtype, np.floating) and np.all(raw == np.round(raw)))
            ):
                raise DojoConfigError(
                    f"Meta actions must be {n} integer(s) in 0..{len(MetaAction) - 1}; got {action!r}."
                )
            meta = np.where(idle, int(MetaAction.IDLE), raw.reshape(n)).astype(np.int64)
            if ((meta < 0) | (meta >= len(MetaAction))).any():
                raise DojoConfigError(
                    f"Meta actions must be integers in 0..{len(MetaAction) - 1}; got {action!r}."
                )
            return world.meta_action(meta)
        try:
            arr = np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise DojoConfigError(
                f"Continuous actions must be numbers [accel m/s^2, steer rad]; got {action!r}."
            ) from e
        if arr.size != 2 * n:
            raise DojoConfigError(
                f"Continuous actions must have shape {(2,) if n == 1 else (n, 2)}; got shape {arr.shape}."
            )
        arr = np.where(idle[:, None], 0.0, arr.reshape(n, 2))
        if not np.isfinite(arr).all():
            raise DojoConfigError(f"Continuous actions contain NaN or infinity: {action!r}.")
        accel = np.clip(arr[:, 0], *EGO_ACCEL_RANGE)
        steer = np.clip(arr[:, 1], -EGO_STEER_LIMIT, EGO_STEER_LIMIT)
        return world.raw_action(accel, steer)

    def step(
        self, action: Any, idle: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Step every world; returns (reward, terminated, truncated, collision, critical) (W,)."""
        world = self.require_world()
        result = world.step(self.controls(action, idle))
        veh = world.vehicles
        progress = np.clip(veh.v[:, 0] * np.cos(veh.psi[:, 0]) / REWARD_SPEED_MPS, 0.0, 1.0)
        collision = result.ego_collision.copy()
        near_miss = result.critical & ~collision
        reward = np.where(collision, COLLISION_REWARD, progress - CRITICAL_PENALTY * near_miss)
        truncated = world.step_count >= self.config.episode_steps
        return reward, collision, truncated, collision, result.critical.copy()

    def observe(self) -> np.ndarray:
        return kinematics(self.require_world(), self.config.vehicles_count)

    def ttc(self) -> np.ndarray:
        return self.require_world().perception.ttc_s[:, 0].copy()


class DojoEnv(gym.Env[np.ndarray, Any]):
    """One world of a scenario family as a Gymnasium environment (see the module docstring).

    >>> env = DojoEnv(family="cut_in", action_type="meta")
    >>> obs, info = env.reset(seed=3)          # scenario ('cut_in', 3)
    >>> obs, reward, terminated, truncated, info = env.step(1)
    """

    metadata: dict[str, Any] = {"render_modes": [], "render_fps": round(1.0 / DT_S)}

    def __init__(
        self,
        family: str = "highway",
        episode_s: float = EPISODE_S,
        action_type: str = "continuous",
        observation: str = "kinematics",
        vehicles_count: int = 10,
        ttc_critical_s: float = 1.5,
        max_episode_steps: int | None = None,
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None:
            raise DojoConfigError(
                f"render_mode={render_mode!r} is not supported; Dojo envs do not render (use `dojo world render`)."
            )
        self.config = EnvConfig(
            family,
            episode_s,
            action_type,
            observation,
            vehicles_count,
            ttc_critical_s,
            max_episode_steps,
        )
        self.observation_space = observation_space(self.config)
        self.action_space = action_space(self.config)
        self.render_mode = None
        self._core = _Core(self.config, 1)
        self._no_idle = np.zeros(1, dtype=bool)

    @property
    def world(self) -> World:
        """The underlying one-world batch (after reset)."""
        return self._core.require_world()

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is not None:
            seed = check_seed(seed)
        super().reset(seed=seed)
        scenario = (
            seed
            if seed is not None
            else int(self.np_random.integers(TRAIN_SEEDS.start, TRAIN_SEEDS.stop))
        )
        self._core.start(np.array([0]), [scenario])
        ttc = float(self._core.ttc()[0])
        return self._core.observe()[0], self._info(ttc, ttc < self.config.ttc_critical_s, False)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        reward, terminated, truncated, collision, critical = self._core.step(action, self._no_idle)
        info = self._info(float(self._core.ttc()[0]), bool(critical[0]), bool(collision[0]))
        return (
            self._core.observe()[0],
            float(reward[0]),
            bool(terminated[0]),
            bool(truncated[0]),
            info,
        )

    def _info(self, ttc: float, critical: bool, collision: bool) -> dict[str, Any]:
        world = self.world
        return {
            "ttc_s": ttc,
            "critical": bool(critical),
            "collision": collision,
            "family": self.config.family,
            "scenario_seed": int(world.seeds[0]),
        }

    def close(self) -> None:
        self._core.world = None


class DojoVectorEnv(VectorEnv[np.ndarray, np.ndarray, np.ndarray]):
    """``num_envs`` worlds of one family stepped as one batched World, NEXT_STEP autoreset.

    >>> envs = DojoVectorEnv(num_envs=256, family="cut_in")
    >>> obs, info = envs.reset(seed=0)          # env i plays scenario ('cut_in', i)
    >>> obs, reward, terminated, truncated, info = envs.step(envs.action_space.sample())
    """

    metadata: dict[str, Any] = {
        "render_modes": [],
        "render_fps": round(1.0 / DT_S),
        "autoreset_mode": AutoresetMode.NEXT_STEP,
    }

    def __init__(
        self,
        num_envs: int = 1,
        family: str = "highway",
        episode_s: float = EPISODE_S,
        action_type: str = "continuous",
        observation: str = "kinematics",
        vehicles_count: int = 10,
        ttc_critical_s: float = 1.5,
        max_episode_steps: int | None = None,
        render_mode: str | None = None,
    ) -> None:
        whole("num_envs", num_envs, 1)
        if render_mode is not None:
            raise DojoConfigError(
                f"render_mode={render_mode!r} is not supported; Dojo envs do not render (use `dojo world render`)."
            )
        self.config = EnvConfig(
            family,
            episode_s,
            action_type,
            observation,
            vehicles_count,
            ttc_critical_s,
            max_episode_steps,
        )
        self.num_envs = int(num_envs)
        self.single_observation_space = observation_space(self.config)
        self.single_action_space = action_space(self.config)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.render_mode = None
        self._core = _Core(self.config, self.num_envs)
        self._rngs: list[np.random.Generator | None] = [None] * self.num_envs
        self._autoreset = np.zeros(self.num_envs, dtype=bool)
        self._episodes = np.zeros(self.num_envs, dtype=np.int64)

    @property
    def world(self) -> World:
        """The underlying batched World (after reset); world i is env i."""
        return self._core.require_world()

    @property
    def episodes(self) -> np.ndarray:
        """(num_envs,) episodes started by each env since it was last reset with a seed."""
        return self._episodes.copy()

    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        n = self.num_envs
        seeds = self._env_seeds(seed)
        mask = np.ones(n, dtype=bool)
        if options is not None and "reset_mask" in options:
            mask = np.asarray(options["reset_mask"])
            if mask.shape != (n,) or mask.dtype != np.bool_ or not mask.any():
                raise DojoConfigError(
                    f"options['reset_mask'] must be a bool array of shape ({n},) with a True; got {options['reset_mask']!r}."
                )
        if isinstance(seed, (int, np.integer)):
            super().reset(seed=int(seed))
        idx = np.nonzero(mask)[0]
        for i in idx:
            if seeds[i] is not None:
                self._rngs[i] = seeding.np_random(seeds[i])[0]
                self._episodes[i] = 0
        self._start(idx, [seeds[i] for i in idx])
        ttc = self._core.ttc()
        zeros = np.zeros(n, dtype=bool)
        return self._core.observe(), self._info(ttc, ttc < self.config.ttc_critical_s, zeros, mask)

    def _env_seeds(self, seed: int | Sequence[int | None] | None) -> list[int | None]:
        n = self.num_envs
        if seed is None:
            return [None] * n
        if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            check_seed(seed)
            if int(seed) + n - 1 >= MAX_SEED:
                raise DojoConfigError(
                    f"Seed {seed!r} is too large for {n} envs: env i uses seed + i, which must stay below {MAX_SEED}."
                )
            return [int(seed) + i for i in range(n)]
        if isinstance(seed, (str, bytes)) or not isinstance(seed, Sequence):
            raise DojoConfigError(
                f"Seed {seed!r} must be an integer, a list of {n} integers (or None), or None."
            )
        if len(seed) != n:
            raise DojoConfigError(f"Got {len(seed)} seeds for num_envs={n}; give one per env.")
        return [None if s is None else check_seed(s) for s in seed]

    def _start(self, idx: np.ndarray, seeds: Sequence[int | None]) -> None:
        """Start the next scenario of envs ``idx``: its own seed, else the next draw of its generator."""
        scenario: list[int] = []
        for i, s in zip(idx, seeds, strict=True):
            if s is None:
                rng = self._rngs[i]
                if rng is None:
                    rng = self._rngs[i] = seeding.np_random(
                        int(self.np_random.integers(0, MAX_SEED))
                    )[0]
                s = int(rng.integers(TRAIN_SEEDS.start, TRAIN_SEEDS.stop))
            scenario.append(s)
        self._core.start(idx, scenario)
        self._episodes[idx] += 1
        self._autoreset[idx] = False

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        restart = self._autoreset.copy()
        reward, terminated, truncated, collision, critical = self._core.step(actions, restart)
        if restart.any():
            idx = np.nonzero(restart)[0]
            self._start(idx, [None] * len(idx))
            reward[idx] = 0.0
            terminated[idx] = truncated[idx] = collision[idx] = False
        ttc = self._core.ttc()
        critical = np.where(restart, ttc < self.config.ttc_critical_s, critical)
        self._autoreset = terminated | truncated
        info = self._info(ttc, critical, collision, np.ones(self.num_envs, dtype=bool))
        return self._core.observe(), reward.astype(np.float64), terminated, truncated, info

    def _info(
        self, ttc: np.ndarray, critical: np.ndarray, collision: np.ndarray, mask: np.ndarray
    ) -> dict[str, Any]:
        world = self.world
        info: dict[str, Any] = {
            "ttc_s": ttc,
            "critical": np.asarray(critical, dtype=bool),
            "collision": np.asarray(collision, dtype=bool),
            "family": np.array([self.config.family] * self.num_envs, dtype=object),
            "scenario_seed": world.seeds.copy(),
        }
        for key in list(info):
            info[f"_{key}"] = mask.copy()
        return info

    def close_extras(self, **kwargs: Any) -> None:
        self._core.world = None


def register_envs() -> None:
    """Register the six ``dojo/<Family>-v0`` ids with gymnasium; calling it again changes nothing."""
    max_steps = math.ceil(EPISODE_S / DT_S - 1e-9)
    for family in FAMILIES:
        env_id = ENV_IDS[family]
        if env_id in gym.registry:
            continue
        gym.register(
            id=env_id,
            entry_point="dojo.world.envs:DojoEnv",
            vector_entry_point="dojo.world.envs:DojoVectorEnv",
            max_episode_steps=max_steps,
            kwargs={"family": family},
        )


__all__ = [
    "ENV_IDS",
    "OBS_FEATURES",
    "DojoEnv",
    "DojoVectorEnv",
    "EnvConfig",
    "kinematics",
    "max_vehicle_slots",
    "register_envs",
]
