"""highway-env as a reference: its driver constants in our terms, and its speed.

Everything in dojo that touches highway-env lives here, and highway-env is imported inside the
functions only: it is a dev/bench extra (``pip install 'dojo[bench]'``), never a runtime
dependency of the world.

Parameter mapping (read from highway-env 1.12.1's ``IDMVehicle`` / ``ControlledVehicle``):

- its IDM is ``a = A (1 - (v/v0)^DELTA) - A (d*/d)^2`` with ``A = COMFORT_ACC_MAX``,
  ``d* = DISTANCE_WANTED + v T + v dv / (2 sqrt(A B))``, ``B = -COMFORT_ACC_MIN`` and ``d`` the
  *centre-to-centre* distance along the lane (not a bumper gap); ``DISTANCE_WANTED = 5 m + LENGTH``
  carries the body length instead. So it is exactly our ``drivers.idm_accel`` with
  ``a_max = A``, ``b_comf = B``, ``s0 = DISTANCE_WANTED`` and ``gap_m`` = our bumper-to-bumper gap
  + half of each body length. (Our bumper gap with ``s0 = 5 m`` is *not* the same model: the
  ratio ``s*/gap`` differs, see docs/world-highway-env.md.)
- its command is clipped to +/- ``ACC_MAX`` (our ``ACCEL_LIMIT``); MOBIL uses the unclipped IDM.
- MOBIL: ``b_safe = LANE_CHANGE_MAX_BRAKING_IMPOSED``, ``a_gain = LANE_CHANGE_MIN_ACC_GAIN``,
  ``politeness = POLITENESS``; decisions at most every ``LANE_CHANGE_DELAY``.
- lane keeping: the same cascade as our ``steer_to_offset`` (``TAU_LATERAL``, ``TAU_HEADING``,
  ``MAX_STEERING_ANGLE``) on the same mid-wheelbase kinematic bicycle.
"""

from __future__ import annotations

import math
import time
from types import ModuleType
from typing import Any

import numpy as np

from dojo.errors import DojoConfigError

INSTALL_HINT = "highway-env is not installed; pip install 'dojo[bench]'"


def _highway_env() -> ModuleType:
    try:
        import highway_env
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DojoConfigError(INSTALL_HINT) from exc
    return highway_env


def highway_env_driver_params() -> dict[str, float]:
    """highway-env's default IDM/MOBIL/lane-keeping constants under our parameter names.

    ``s0_centre_m`` is the jam distance to use with a *centre-to-centre* gap (see module doc).
    """
    _highway_env()
    from highway_env.road.lane import StraightLane
    from highway_env.vehicle.behavior import IDMVehicle

    length = float(IDMVehicle.LENGTH)
    return {
        "a_max": float(IDMVehicle.COMFORT_ACC_MAX),
        "b_comf": float(-IDMVehicle.COMFORT_ACC_MIN),
        "s0_centre_m": float(IDMVehicle.DISTANCE_WANTED),
        "s0_bumper_m": float(IDMVehicle.DISTANCE_WANTED) - length,
        "t_headway": float(IDMVehicle.TIME_WANTED),
        "delta": float(IDMVehicle.DELTA),
        "accel_limit": float(IDMVehicle.ACC_MAX),
        "politeness": float(IDMVehicle.POLITENESS),
        "b_safe": float(IDMVehicle.LANE_CHANGE_MAX_BRAKING_IMPOSED),
        "a_gain": float(IDMVehicle.LANE_CHANGE_MIN_ACC_GAIN),
        "lane_change_delay_s": float(IDMVehicle.LANE_CHANGE_DELAY),
        "length_m": length,
        "tau_lateral_s": float(IDMVehicle.TAU_LATERAL),
        "tau_heading_s": float(IDMVehicle.TAU_HEADING),
        "max_steer_rad": float(IDMVehicle.MAX_STEERING_ANGLE),
        "lane_width_m": float(StraightLane.DEFAULT_WIDTH),
    }


def measure_highway_env(
    seconds: float = 10.0, env_id: str = "highway-fast-v0", seed: int = 0
) -> dict[str, Any]:
    """Run highway-env's ``env_id`` with the IDLE meta-action for about ``seconds`` of wall time.

    No rendering (``render_mode=None``; the default config's Kinematics observation). The episode
    is reset on termination or truncation, and resets count in the measured time (as in training).
    ``vehicle_steps_per_s`` counts every simulation step of every vehicle on the road, the ego
    included; one decision is ``simulation_frequency // policy_frequency`` simulation steps.
    """
    if not seconds > 0:
        raise DojoConfigError(f"seconds={seconds!r} must be positive.")
    _highway_env()
    import gymnasium as gym

    try:
        env = gym.make(env_id, render_mode=None)
    except gym.error.Error as exc:
        raise DojoConfigError(
            f"env_id={env_id!r} is not a registered highway-env environment: {exc}"
        ) from exc
    try:
        base: Any = env.unwrapped
        cfg = base.config
        sim_per_decision = int(cfg["simulation_frequency"] // cfg["policy_frequency"])
        env.reset(seed=seed)
        action_type = base.action_type
        # IDLE for the meta-action envs; a zero (continuous) action otherwise.
        idle: Any = getattr(action_type, "actions_indexes", {}).get("IDLE")
        if idle is None:
            idle = np.zeros(env.action_space.shape, dtype=np.float32)
        decisions = 0
        vehicle_steps = 0
        start = time.perf_counter()
        while True:
            # every vehicle on the road at the start of the decision, for each simulation step
            vehicle_steps += sim_per_decision * len(base.road.vehicles)
            _, _, terminated, truncated, _ = env.step(idle)
            decisions += 1
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
            if terminated or truncated:
                env.reset()
        vehicles = vehicle_steps / (decisions * sim_per_decision)
    finally:
        env.close()
    return {
        "env_id": env_id,
        "decisions_per_s": decisions / elapsed,
        "vehicle_steps_per_s": vehicle_steps / elapsed,
        "vehicles": int(round(vehicles)) if math.isclose(vehicles, round(vehicles)) else vehicles,
        "sim_steps_per_decision": sim_per_decision,
        "seconds": elapsed,
    }
