"""The careful driver decides only from what the rig shows: an invisible object changes nothing."""

from __future__ import annotations

import numpy as np

from dojo.fleet.policy import make_policy
from dojo.world.actions import careful_action, expert_action
from dojo.world.camera import CameraRig
from dojo.world.vehicles import Kind
from dojo.world.visibility import visible_objects
from dojo.world.world import World

SEED = 1_000_000


def stalled_ahead(gaps_m: list[float]) -> World:
    """Stalled-car worlds with the obstacle ``gaps_m`` ahead of the ego and no other traffic."""
    world = World("stalled", seeds=[SEED] * len(gaps_m))
    veh = world.vehicles  # edited before anything perceived the world
    obstacle = (veh.active & ~veh.driven).argmax(axis=1)  # the stalled car or debris
    for w, gap in enumerate(gaps_m):
        k = obstacle[w]
        veh.active[w, 1:] = False
        veh.active[w, k] = True
        veh.kind[w, k] = Kind.CAR
        veh.length[w, k], veh.width[w, k], veh.height[w, k] = 4.6, 1.9, 1.5
        veh.s[w, k] = veh.s[w, 0] + 0.5 * (veh.length[w, 0] + veh.length[w, k]) + gap
        veh.d[w, k] = veh.d[w, 0]
        veh.v[w, 0] = veh.v0[w, 0]  # cruising at its desired speed: free road means no braking
    return world


def test_a_stalled_car_beyond_range_does_not_make_the_careful_driver_brake() -> None:
    rig = CameraRig.default()
    world = stalled_ahead([300.0, 100.0])  # beyond the narrow camera's 250 m; well within
    seen = visible_objects(world, rig)
    assert seen.sum(axis=1).tolist() == [0, 1]
    expert, careful = expert_action(world), careful_action(world, rig)
    assert expert.accel_mps2[0] < -0.5  # the all-seeing expert already brakes at 300 m
    assert abs(careful.accel_mps2[0]) < 0.05  # the careful driver sees an empty road
    assert careful.accel_mps2[1] < -0.5  # the same car in view: it brakes
    assert careful.accel_mps2[1] == expert.accel_mps2[1]  # and decides as the expert would


def test_the_quad_rig_hides_the_stalled_car_the_default_shows() -> None:
    world = stalled_ahead([150.0])
    assert careful_action(world, CameraRig.named("quad")).accel_mps2[0] > -0.05
    assert careful_action(world, CameraRig.default()).accel_mps2[0] < -0.5


def test_careful_is_a_policy_that_leaves_the_world_unchanged() -> None:
    world = stalled_ahead([100.0])
    before = world.vehicles.active.copy()
    policy = make_policy("careful", CameraRig.default())
    act = policy.act(world, None)
    assert policy.name == "careful" and policy.frames == 0
    assert np.array_equal(world.vehicles.active, before)  # the masked view is a copy
    assert act.accel_mps2[0] == careful_action(world, CameraRig.default()).accel_mps2[0]
