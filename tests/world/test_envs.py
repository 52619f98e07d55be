"""Gymnasium environments over the batched world: API conformance, seeding, batching, autoreset."""

from __future__ import annotations

import math
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

import dojo.world  # noqa: F401 - registers the dojo/<Family>-v0 ids
from dojo.errors import DojoConfigError
from dojo.world import TRAIN_SEEDS, MetaAction
from dojo.world.envs import (
    ENV_IDS,
    OBS_FEATURES,
    OBS_RANGE_M,
    DojoEnv,
    DojoVectorEnv,
    kinematics,
    max_vehicle_slots,
    register_envs,
)
from dojo.world.scenarios import FAMILIES, generate
from dojo.world.world import EGO_ACCEL_RANGE, EGO_STEER_LIMIT, World

# check_env recommends a [-1, 1] action Box; ours is in physical units on purpose.
_UNNORMALISED_BOX = "symmetric and normalized space"


def _check(env: gym.Env[Any, Any]) -> list[str]:
    """Run gymnasium's checker; return the warnings it raised other than the action-scale advice."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env)
    return [str(w.message) for w in caught if _UNNORMALISED_BOX not in str(w.message)]


# ------------------------------------------------------------------ registration and checker
@pytest.mark.parametrize("family", FAMILIES)
def test_registered_id_passes_env_checker(family: str) -> None:
    env_id = ENV_IDS[family]
    spec = gym.spec(env_id)
    assert spec.kwargs["family"] == family
    assert spec.max_episode_steps == 400  # 40 s at 10 Hz
    env = gym.make(env_id)
    assert isinstance(env.unwrapped, DojoEnv)
    assert _check(env.unwrapped) == []
    env.reset(seed=1)
    _, _, _, _, info = env.step(env.action_space.sample())  # through make's wrappers too
    assert info["family"] == family and info["scenario_seed"] == 1
    env.close()


def test_meta_env_passes_env_checker_without_warnings() -> None:
    env = gym.make("dojo/Merge-v0", action_type="meta")
    assert env.action_space == gym.spaces.Discrete(5)
    assert _check(env.unwrapped) == []


def test_registration_is_idempotent() -> None:
    before = {k: v for k, v in gym.registry.items() if k.startswith("dojo/")}
    register_envs()
    register_envs()
    after = {k: v for k, v in gym.registry.items() if k.startswith("dojo/")}
    assert set(after) == set(ENV_IDS.values()) and after == before


# ------------------------------------------------------------------ seeding and determinism
def _rollout(
    env: DojoEnv, seed: int, actions: np.ndarray
) -> tuple[np.ndarray, list[float], list[dict[str, Any]]]:
    obs, info = env.reset(seed=seed)
    seen, rewards, infos = [obs], [], [info]
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        seen.append(obs)
        rewards.append(reward)
        infos.append(info)
        if terminated or truncated:
            break
    return np.array(seen), rewards, infos


def test_same_seed_same_observation_sequence() -> None:
    rng = np.random.default_rng(0)
    actions = np.stack([rng.uniform(-2.0, 1.0, 60), rng.uniform(-0.005, 0.005, 60)], axis=1).astype(
        np.float32
    )
    a = _rollout(DojoEnv(family="cut_in"), 7, actions)
    b = _rollout(DojoEnv(family="cut_in"), 7, actions)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1] == b[1] and a[2] == b[2]
    c = _rollout(DojoEnv(family="cut_in"), 8, actions)
    assert not np.array_equal(a[0][0], c[0][0])


def test_seed_picks_scenario_and_unseeded_resets_draw_train_seeds() -> None:
    env, twin = DojoEnv(family="stalled"), DojoEnv(family="stalled")
    assert env.reset(seed=1_050_000)[1]["scenario_seed"] == 1_050_000  # held-out seeds are playable
    twin.reset(seed=1_050_000)
    drawn = [env.reset()[1]["scenario_seed"] for _ in range(3)]
    assert drawn == [twin.reset()[1]["scenario_seed"] for _ in range(3)]
    assert all(s in TRAIN_SEEDS for s in drawn) and len(set(drawn)) == 3
    obs, _ = env.reset(seed=5)
    np.testing.assert_array_equal(
        obs, kinematics(World("stalled", [5], max_vehicles=max_vehicle_slots("stalled")), 10)[0]
    )


# ------------------------------------------------------------------ observation, reward, episode end
def test_observation_is_ego_first_then_nearest_vehicles_obstacles_included() -> None:
    assert len(OBS_FEATURES) == 7
    # a stalled-car scenario whose obstacle starts within observation range
    seed = next(s for s in range(200) if _obstacle_ahead_m(s) < OBS_RANGE_M - 10.0)
    env = DojoEnv(family="stalled", vehicles_count=60)
    obs, _ = env.reset(seed=seed)
    assert obs in env.observation_space and obs.dtype == np.float32
    veh = env.world.vehicles
    assert obs[0, 0] == 1.0 and obs[0, 1] == 0.0 and obs[0, 3] == np.float32(veh.v[0, 0])
    assert obs[0, 2] == np.float32(veh.d[0, 0])
    present = obs[1:, 0] == 1.0
    n = int(present.sum())
    assert (
        present[:n].all() and not present[n:].any() and not obs[1 + n :].any()
    )  # padding is zeros
    length = env.world.roads.length[0]
    ds = (veh.s[0] - veh.s[0, 0] + length / 2) % length - length / 2
    expected = veh.active[0] & (np.abs(ds) <= OBS_RANGE_M)
    expected[0] = False
    assert n == int(expected.sum())
    dist = np.hypot(obs[1 : 1 + n, 1], obs[1 : 1 + n, 2])
    assert (np.diff(dist) >= -1e-3).all()  # nearest first
    obstacle = int(
        np.nonzero(veh.active[0] & ~veh.driven[0] & (np.arange(veh.shape[1]) > 0) & expected)[0][0]
    )
    row = obs[1 : 1 + n][np.isclose(obs[1 : 1 + n, 1], ds[obstacle], atol=1e-3)]
    assert len(row) == 1 and row[0, 3] == np.float32(
        -veh.v[0, 0]
    )  # a standing obstacle closes at ego speed


def _obstacle_ahead_m(seed: int) -> float:
    sc = generate("stalled", seed)
    v = sc.vehicles
    obstacles = np.nonzero(v.active[0] & ~v.driven[0])[0]
    return float(
        min(((v.s[0, i] - v.s[0, 0]) % sc.road.length_m for i in obstacles), default=math.inf)
    )


def test_collision_terminates_with_minus_one() -> None:
    env = DojoEnv(family="highway")
    env.reset(seed=2)
    for _ in range(100):  # full steering drives off the road within a few seconds
        _, reward, terminated, truncated, info = env.step(
            np.array([0.0, EGO_STEER_LIMIT], dtype=np.float32)
        )
        if terminated:
            break
        assert -1.0 <= reward <= 1.0
    assert terminated and not truncated
    assert reward == -1.0 and info["collision"] and info["critical"]


def test_truncation_at_episode_length() -> None:
    env = DojoEnv(family="dense", episode_s=1.0, action_type="meta")
    env.reset(seed=0)
    ends = [env.step(int(MetaAction.IDLE))[3] for _ in range(10)]
    assert ends == [False] * 9 + [True]


# ------------------------------------------------------------------ actions
def test_out_of_range_continuous_actions_are_clipped() -> None:
    a, b = DojoEnv(family="merge"), DojoEnv(family="merge")
    a.reset(seed=4)
    b.reset(seed=4)
    for _ in range(5):
        obs_a = a.step(np.array([100.0, -3.0]))[0]
        obs_b = b.step(np.array([EGO_ACCEL_RANGE[1], -EGO_STEER_LIMIT], dtype=np.float32))[0]
        np.testing.assert_array_equal(obs_a, obs_b)


@pytest.mark.parametrize(
    "action", [np.array([np.nan, 0.0]), np.array([0.0, np.inf]), np.zeros(3), "fast"]
)
def test_malformed_continuous_action_raises(action: Any) -> None:
    env = DojoEnv()
    env.reset(seed=0)
    with pytest.raises(DojoConfigError):
        env.step(action)


def test_meta_actions() -> None:
    fast, slow = (
        DojoEnv(family="highway", action_type="meta"),
        DojoEnv(family="highway", action_type="meta"),
    )
    fast.reset(seed=3)
    slow.reset(seed=3)
    for _ in range(30):
        v_fast = fast.step(int(MetaAction.FASTER))[0][0, 3]
        v_slow = slow.step(int(MetaAction.SLOWER))[0][0, 3]
    assert v_fast > v_slow + 3.0
    for bad in (5, -1, 1.5):
        with pytest.raises(DojoConfigError, match="0..4"):
            fast.step(bad)
    vec = DojoVectorEnv(num_envs=3, family="highway", action_type="meta")
    assert vec.action_space == gym.spaces.MultiDiscrete([5, 5, 5])
    vec.reset(seed=0)
    vec.step(np.array([MetaAction.LANE_LEFT, MetaAction.IDLE, MetaAction.LANE_RIGHT]))


# ------------------------------------------------------------------ configuration errors
@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"family": "motorway"}, "motorway"),
        ({"action_type": "discrete"}, "discrete"),
        ({"observation": "pixels"}, "pixels"),
        ({"episode_s": 0.0}, "episode_s=0.0"),
        ({"episode_s": -5}, "episode_s=-5"),
        ({"episode_s": float("nan")}, "episode_s=nan"),
        ({"vehicles_count": 0}, "vehicles_count=0"),
        ({"ttc_critical_s": 0}, "ttc_critical_s=0"),
        ({"max_episode_steps": 0}, "max_episode_steps=0"),
        ({"render_mode": "human"}, "human"),
    ],
)
def test_bad_config_raises_naming_the_value(kwargs: dict[str, Any], named: str) -> None:
    with pytest.raises(DojoConfigError, match=named):
        DojoEnv(**kwargs)
    with pytest.raises(DojoConfigError, match=named):
        DojoVectorEnv(num_envs=2, **kwargs)
    if "max_episode_steps" not in kwargs:  # gymnasium.make takes that one for its TimeLimit
        with warnings.catch_warnings(), pytest.raises(DojoConfigError, match=named):
            warnings.simplefilter(
                "ignore"
            )  # make's own note that 'human' is not a render mode here
            gym.make("dojo/Highway-v0", **kwargs)


@pytest.mark.parametrize("seed", [-1, 2**31, 1.5, True])
def test_bad_seed_raises(seed: Any) -> None:
    with pytest.raises(DojoConfigError, match="out of range"):
        DojoEnv().reset(seed=seed)
    with pytest.raises(DojoConfigError):
        DojoVectorEnv(num_envs=2).reset(seed=seed)


def test_bad_vector_config_and_seeds() -> None:
    with pytest.raises(DojoConfigError, match="num_envs=0"):
        DojoVectorEnv(num_envs=0)
    vec = DojoVectorEnv(num_envs=4)
    with pytest.raises(DojoConfigError, match=str(2**31 - 2)):
        vec.reset(seed=2**31 - 2)  # env 3 would get 2**31 + 1
    with pytest.raises(DojoConfigError, match="3 seeds"):
        vec.reset(seed=[1, 2, 3])


# ------------------------------------------------------------------ vector env
def test_make_vec_uses_the_batched_vector_env() -> None:
    envs = gym.make_vec("dojo/CutIn-v0", num_envs=8, vectorization_mode="vector_entry_point")
    assert isinstance(envs.unwrapped, DojoVectorEnv) and envs.num_envs == 8
    assert envs.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    single = DojoEnv(family="cut_in")
    assert envs.observation_space == batch_space(single.observation_space, 8)
    assert envs.action_space == batch_space(single.action_space, 8)
    obs, info = envs.reset(seed=0)
    assert obs.shape == (8, 10, 7) and obs in envs.observation_space
    assert list(info["scenario_seed"]) == list(range(8))
    assert envs.unwrapped.world.num_worlds == 8  # one batched World, no process per env
    obs, reward, terminated, truncated, info = envs.step(envs.action_space.sample())
    assert (
        reward.shape == terminated.shape == truncated.shape == (8,)
        and obs in envs.observation_space
    )
    assert isinstance(
        gym.make_vec("dojo/CutIn-v0", num_envs=2).unwrapped, DojoVectorEnv
    )  # the default mode


def _expert_actions(worlds: list[World], noise: np.ndarray) -> np.ndarray:
    """Expert (accel, steer) of the worlds' egos, acceleration noise added, (N, 2) float32."""
    expert = [w.expert_action() for w in worlds]
    act = np.concatenate([np.stack([a.accel_mps2, a.steer_rad], axis=1) for a in expert], axis=0)
    act[:, 0] += noise
    return act.astype(np.float32)


def _compare_to_sync(
    family: str,
    action_type: str,
    n: int,
    steps: int,
    episode_s: float = 40.0,
    seed: int = 100,
    weave: bool = False,
) -> int:
    """Step DojoVectorEnv and gymnasium's SyncVectorEnv of DojoEnvs side by side; return autoresets seen.

    ``weave``: env 0 swerves left and right (meta actions), so it crashes and restarts at its own times.
    """
    kw: dict[str, Any] = {"episode_s": episode_s, "action_type": action_type}
    batched = DojoVectorEnv(num_envs=n, family=family, **kw)
    sync = gym.make_vec(ENV_IDS[family], num_envs=n, vectorization_mode="sync", **kw)
    rng = np.random.default_rng(1 if not weave else 0)
    out_b: tuple[Any, ...] = batched.reset(seed=seed)
    out_s: tuple[Any, ...] = sync.reset(seed=seed)
    restarts = 0
    for step in range(steps):
        _assert_same_step(out_b, out_s, step)
        if action_type == "meta":
            actions = rng.integers(0, len(MetaAction), n)
            if weave:
                actions[0] = MetaAction.LANE_LEFT if (step // 3) % 2 == 0 else MetaAction.LANE_RIGHT
        else:
            noise = rng.normal(0.0, 1.0, n)
            actions = _expert_actions([batched.world], noise)
            alone = _expert_actions([e.unwrapped.world for e in sync.unwrapped.envs], noise)  # type: ignore[attr-defined]
            np.testing.assert_array_equal(actions, alone, err_msg=f"expert action at step {step}")
        ended = out_b[2] | out_b[3] if len(out_b) == 5 else np.zeros(n, dtype=bool)
        restarts += int(ended.sum())
        out_b, out_s = batched.step(actions), sync.step(actions)
    return restarts


def _assert_same_step(a: tuple[Any, ...], b: tuple[Any, ...], step: int) -> None:
    for x, y in zip(a[:-1], b[:-1], strict=True):
        np.testing.assert_array_equal(x, y, err_msg=f"step {step}")
    for key in ("ttc_s", "critical", "collision", "family", "scenario_seed"):
        np.testing.assert_array_equal(
            a[-1][key], b[-1][key], err_msg=f"info[{key!r}] at step {step}"
        )


@pytest.mark.parametrize(
    ("family", "action_type"), [("cut_in", "meta"), ("merge", "continuous"), ("dense", "meta")]
)
def test_vector_env_equals_separate_envs(family: str, action_type: str) -> None:
    """Env i of one batched World follows exactly the trajectory of DojoEnv i alone (SyncVectorEnv),
    through autoresets that happen in every env at the same step (truncation)."""
    restarts = _compare_to_sync(family, action_type, n=4, steps=70, episode_s=3.0)
    assert restarts >= 8  # two episode ends per env were crossed


def test_vector_env_equals_separate_envs_when_episodes_end_at_different_steps() -> None:
    """The same property when envs crash and restart at their own times (the usual case in training)."""
    for family, seed in [("cut_in", 20), ("cut_in", 28), ("dense", 8), ("highway", 4)]:
        _compare_to_sync(family, "meta", n=4, steps=200, seed=seed, weave=True)


def test_batch_size_does_not_change_a_trajectory() -> None:
    rng = np.random.default_rng(5)
    actions = rng.integers(0, len(MetaAction), (60, 6))
    big = DojoVectorEnv(num_envs=6, family="highway", action_type="meta")
    small = DojoVectorEnv(num_envs=2, family="highway", action_type="meta")
    obs_big, _ = big.reset(seed=20)
    obs_small, _ = small.reset(seed=[22, 23])
    np.testing.assert_array_equal(obs_big[2:4], obs_small)
    for a in actions:
        obs_big, r_big = big.step(a)[:2]
        obs_small, r_small = small.step(a[2:4])[:2]
        np.testing.assert_array_equal(obs_big[2:4], obs_small)
        np.testing.assert_array_equal(r_big[2:4], r_small)


def test_autoreset_restarts_only_the_finished_env() -> None:
    n = 3
    vec = DojoVectorEnv(num_envs=n, family="highway", episode_s=5.0)
    obs, info = vec.reset(seed=10)
    first_seeds = info["scenario_seed"].copy()
    steer = np.zeros((n, 2), dtype=np.float32)
    steer[0, 1] = EGO_STEER_LIMIT  # env 0 drives off the road; the others go straight a while
    for k in range(60):  # noqa: B007 - k is the crash step after the loop
        obs, reward, terminated, truncated, info = vec.step(steer)
        if terminated[0]:
            break
        assert not terminated[1:].any()
    assert terminated[0] and reward[0] == -1.0 and info["collision"][0]
    crash_step = k
    final = obs[0].copy()

    obs, reward, terminated, truncated, info = vec.step(steer)  # NEXT_STEP: env 0 restarts now
    assert reward[0] == 0.0 and not terminated[0] and not truncated[0] and not info["collision"][0]
    twin = DojoEnv(family="highway")
    twin.reset(seed=10)
    expected_obs, expected_info = twin.reset()  # the scenario a lone env plays next
    assert info["scenario_seed"][0] == expected_info["scenario_seed"] != first_seeds[0]
    np.testing.assert_array_equal(obs[0], expected_obs)
    assert not np.array_equal(obs[0], final)
    np.testing.assert_array_equal(info["scenario_seed"][1:], first_seeds[1:])  # the others go on
    assert (vec.world.step_count[1:] == crash_step + 2).all() and vec.world.step_count[0] == 0
    assert list(vec.episodes) == [2, 1, 1]


def test_reset_mask_resets_only_masked_envs() -> None:
    vec = DojoVectorEnv(num_envs=3, family="lane_drop", action_type="meta")
    vec.reset(seed=0)
    for _ in range(5):
        vec.step(np.ones(3, dtype=np.int64))
    _, info = vec.reset(
        seed=[None, 77, None], options={"reset_mask": np.array([False, True, False])}
    )
    assert list(info["scenario_seed"]) == [0, 77, 2]
    assert list(vec.world.step_count) == [5, 0, 5]
    assert list(info["_ttc_s"]) == [False, True, False]
