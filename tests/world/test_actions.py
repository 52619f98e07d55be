"""Ego actions are values: asking a driver what it would do leaves the world as it was."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from dojo.errors import DojoConfigError
from dojo.world import FAMILIES, Command, MetaAction, World
from dojo.world.world import EgoAction


def world_state(obj: Any, path: str = "world") -> Iterator[tuple[str, Any]]:
    """Every array and plain value reachable from a world (vehicles, roads, hazards, caches)."""
    if isinstance(obj, np.ndarray):
        yield path, obj
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            yield from world_state(getattr(obj, f.name), f"{path}.{f.name}")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from world_state(v, f"{path}[{k!r}]")
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            yield from world_state(v, f"{path}[{i}]")
    elif hasattr(obj, "__dict__"):
        yield from world_state(vars(obj), path)
    else:
        yield path, obj


def snapshot(world: World) -> dict[str, Any]:
    world.perception  # noqa: B018  the cache an action may fill is part of the state
    return copy.deepcopy(dict(world_state(world)))


def assert_unchanged(world: World, before: dict[str, Any], what: str) -> None:
    now = dict(world_state(world))
    assert now.keys() == before.keys(), what
    for name, value in before.items():
        if isinstance(value, np.ndarray):
            assert value.dtype == now[name].dtype, f"{what} changed the dtype of {name}"
            np.testing.assert_array_equal(now[name], value, err_msg=f"{what} changed {name}")
        else:
            assert now[name] == value, f"{what} changed {name}"


def every_action(world: World) -> dict[str, Callable[[], EgoAction]]:
    n = world.num_worlds
    calls: dict[str, Callable[[], EgoAction]] = {
        "expert": world.expert_action,
        "naive": world.naive_action,
        "lane shift": lambda: world.lane_shift_action(
            np.linspace(-2.0, 2.0, n), np.resize([1.0, -1.0, 0.4, -0.7], n)
        ),
        "raw": lambda: world.raw_action(np.ones(n), np.full(n, 0.01)),
        "expert from a lane shift": lambda: world.expert_action(
            ego=world.lane_shift_action(np.zeros(n), np.ones(n))
        ),
    }
    for meta in MetaAction:

        def by_meta(meta: MetaAction = meta) -> EgoAction:
            return world.meta_action(np.full(n, int(meta)))

        calls[f"meta {meta.name}"] = by_meta
    return calls


def _driven(family: str) -> World:
    """Four worlds of ``family`` a little way in, with every route command in use."""
    world = World(family, seeds=range(4))
    world.command[:] = [Command.KEEP_LANE, Command.CHANGE_LEFT, Command.CHANGE_RIGHT, 3]
    for _ in range(17):
        world.step(world.expert_action())
    return world


@pytest.mark.parametrize("family", FAMILIES)
def test_no_action_call_changes_the_world(family: str) -> None:
    world = _driven(family)
    for steps in (3, 1):  # a lane-decision step (20) and a step between decisions (21)
        for _ in range(steps - 1):
            world.step(world.expert_action())
        # some egos heading for the next lane, so a driver that resets the target would show
        world.step(world.lane_shift_action(np.zeros(4), np.array([1.0, -1.0, 1.0, 0.0])))
        before = snapshot(world)
        for name, call in every_action(world).items():
            action = call()
            assert isinstance(action, EgoAction)
            assert_unchanged(world, before, f"{name} at step {int(world.step_count[0])}")


def test_step_with_an_action_is_writing_its_driver_state_then_stepping_its_controls() -> None:
    """What the drivers used to do in place: set the lane target (and target speed), then step."""
    fams = list(FAMILIES)
    seeds = range(len(fams))
    by_value, in_place = World(fams, seeds), World(fams, seeds)
    rng = np.random.default_rng(0)
    for t in range(60):
        pick = t % 3
        metas = rng.integers(0, len(MetaAction), len(fams))
        shifts = rng.uniform(-1.5, 1.5, len(fams))
        actions = []
        for world in (by_value, in_place):
            if pick == 0:
                actions.append(world.expert_action())
            elif pick == 1:
                actions.append(world.meta_action(metas))
            else:
                actions.append(world.lane_shift_action(np.full(len(fams), 0.5), shifts))
        by_value.step(actions[0])
        a = actions[1]
        in_place.vehicles.target_lane[:, 0] = a.target_lane
        in_place.vehicles.v0[:, 0] = a.v0_mps
        in_place.step(a.accel_mps2, a.steer_rad)
    for name, value in world_state(in_place):
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(dict(world_state(by_value))[name], value, err_msg=name)


def test_an_action_is_a_read_only_copy_that_step_does_not_change() -> None:
    world = World("dense", seeds=[1, 2])
    action = world.expert_action()
    kept = copy.deepcopy(action)
    with pytest.raises(dataclasses.FrozenInstanceError):
        action.accel_mps2 = np.zeros(2)  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        action.target_lane[0] = 3
    for _ in range(30):
        world.step(action)
    for f in dataclasses.fields(EgoAction):
        np.testing.assert_array_equal(getattr(action, f.name), getattr(kept, f.name))


def test_an_action_picked_per_world_with_where() -> None:
    world = World("highway", seeds=[0, 1, 2])
    naive, fast = world.naive_action(), world.meta_action(np.full(3, int(MetaAction.FASTER)))
    mixed = naive.where(np.array([False, True, False]), fast)
    assert mixed.v0_mps.tolist() == [naive.v0_mps[0], fast.v0_mps[1], naive.v0_mps[2]]
    assert mixed.accel_mps2[1] == fast.accel_mps2[1] and mixed.accel_mps2[0] == 0.0


def test_malformed_actions_are_refused() -> None:
    world = World("highway", seeds=[0, 1])
    action = world.naive_action()
    with pytest.raises(DojoConfigError, match="EgoAction alone"):
        world.step(action, np.zeros(2))
    short = EgoAction(np.zeros(2), np.zeros(2), np.zeros(1), np.ones(2))
    with pytest.raises(DojoConfigError, match="target_lane and v0_mps"):
        world.step(short)
    with pytest.raises(DojoConfigError, match="NaN"):
        world.step(EgoAction(np.zeros(2), np.zeros(2), np.zeros(2), np.array([np.inf, 1.0])))
