import numpy as np
import pytest

from dojo.errors import DojoConfigError
from dojo.world import FAMILIES, Command, MetaAction, World
from dojo.world.scenarios import HELDOUT_SEEDS, TRAIN_SEEDS, check_split, generate


def _drive(world: World, steps: int) -> np.ndarray:
    """Ego (s, d, v) per step under the human-driver model; (steps, W, 3)."""
    out = []
    for _ in range(steps):
        world.step(world.expert_action())
        v = world.vehicles
        out.append(np.stack([v.s[:, 0], v.d[:, 0], v.v[:, 0]], axis=-1))
    return np.array(out)


def test_same_seed_same_world_across_runs():
    a = _drive(World("dense", seeds=[5, 6]), 150)
    b = _drive(World("dense", seeds=[5, 6]), 150)
    assert np.array_equal(a, b)


def test_a_world_is_the_same_alone_and_in_any_batch():
    fams = ["highway", "merge", "cut_in", "dense", "lane_drop", "stalled"]
    batch = World(fams, seeds=[11, 12, 13, 14, 15, 16])
    together = _drive(batch, 200)
    for k in (1, 3):  # cut_in alone, dense alone
        alone = _drive(World(fams[k + 1 if k == 1 else k], seeds=[12 + k if k == 1 else 14]), 200)
        assert np.array_equal(together[:, k + 1 if k == 1 else k], alone[:, 0])
    # and every vehicle of every world, not only the ego
    assert (
        np.array_equal(batch.vehicles.s[4], World("lane_drop", seeds=[15]).vehicles.s[0]) is False
    )


def test_full_state_of_one_world_is_independent_of_the_batch():
    batch = World("highway", seeds=[1, 2, 3, 4])
    alone = World("highway", seeds=[3])
    for _ in range(120):
        batch.step(batch.expert_action())
        alone.step(alone.expert_action())
    n = alone.vehicles.shape[1]
    for name in ("s", "d", "v", "psi", "target_lane", "active"):
        assert np.array_equal(
            getattr(batch.vehicles, name)[2, :n], getattr(alone.vehicles, name)[0]
        ), name


def test_resetting_some_worlds_leaves_the_others_untouched():
    ref = World("cut_in", seeds=[1, 2, 3])
    world = World("cut_in", seeds=[1, 2, 3])
    for _ in range(50):
        ref.step(ref.expert_action())
        world.step(world.expert_action())
    world.reset([1], seeds=[99])
    assert world.time_s[1] == 0.0
    for _ in range(50):
        ref.step(ref.expert_action())
        world.step(world.expert_action())
    assert np.array_equal(world.vehicles.s[[0, 2]], ref.vehicles.s[[0, 2]])
    fresh = World("cut_in", seeds=[99])
    for _ in range(50):
        fresh.step(fresh.expert_action())
    assert np.array_equal(world.vehicles.s[1, : fresh.vehicles.shape[1]], fresh.vehicles.s[0])


def test_bad_resets_are_refused_and_change_nothing():
    world = World("highway", seeds=[1, 2])
    before = world.vehicles.s.copy()
    with pytest.raises(DojoConfigError, match="needs 1 seeds"):
        world.reset([0], seeds=[5, 6])
    with pytest.raises(DojoConfigError, match=r"\[0, 2\)"):
        world.reset([2], seeds=[5])
    with pytest.raises(DojoConfigError, match="autobahn"):
        world.reset([0], seeds=[5], families=["autobahn"])
    assert np.array_equal(world.vehicles.s, before)


def test_every_family_generates_and_steps():
    world = World(list(FAMILIES), seeds=range(len(FAMILIES)))
    result = None
    for _ in range(30):
        result = world.step(world.expert_action())
    assert result is not None and result.ego_ttc_s.shape == (len(FAMILIES),)
    assert (world.vehicles.v[:, 0] > 5.0).all()  # every ego is moving


def test_scenario_is_a_pure_function_of_family_and_seed():
    a, b = generate("merge", 42), generate("merge", 42)
    assert a.road == b.road and np.array_equal(a.vehicles.s, b.vehicles.s)
    assert generate("merge", 43).road != a.road


def test_held_out_seeds_are_refused_for_training():
    assert check_split(TRAIN_SEEDS.start, "train") == 0
    with pytest.raises(DojoConfigError, match="1000000"):
        check_split(HELDOUT_SEEDS.start, "train")
    assert TRAIN_SEEDS.stop <= HELDOUT_SEEDS.start


@pytest.mark.parametrize(
    "families, seeds, match",
    [
        ("autobahn", [0], "autobahn"),
        ("highway", [-1], "-1"),
        ("highway", [2**31], str(2**31)),
        ("highway", [1.5], "1.5"),
        ("highway", [], "at least one seed"),
        (["highway"], [0, 1], "2 seeds"),
    ],
)
def test_bad_inputs_name_the_value_before_any_work(families, seeds, match):
    with pytest.raises(DojoConfigError, match=match):
        World(families, seeds=seeds)


def test_the_ego_human_driver_drives_when_no_action_is_given():
    world = World("stalled", seeds=[4])
    v_start = world.vehicles.v[0, 0]
    results = [world.step(None, None) for _ in range(300)]  # 30 s: past the stalled car
    assert not any(r.ego_collision[0] for r in results)
    assert (
        world.vehicles.v[0, 0] > 0.5 * v_start
    )  # it went round the obstacle, not stopped behind it
    assert world.vehicles.reaction_steps[0, 0] > 0  # a human, not the expert


def test_bad_actions_are_refused():
    world = World("highway", seeds=[0, 1])
    with pytest.raises(DojoConfigError, match=r"\(2,\)"):
        world.step(np.zeros(3), np.zeros(3))
    with pytest.raises(DojoConfigError, match="or neither"):
        world.step(np.zeros(2), None)
    with pytest.raises(DojoConfigError, match="NaN"):
        world.step(np.array([np.nan, 0.0]), np.zeros(2))
    with pytest.raises(DojoConfigError, match="0..4"):
        world.meta_action(np.array([7, 0]))


def _world_with_a_lane_to_the_left() -> tuple[World, int]:
    """A light-traffic world whose ego has a free lane to its left (nobody within 60 m)."""
    for seed in range(100):
        world = World("stalled", seeds=[seed])
        v, width = world.vehicles, world.roads.lane_width[0]
        lane = round(v.d[0, 0] / width)
        in_left = v.active[0] & (np.abs(v.d[0] - (lane + 1) * width) < 2.0)
        if (
            lane < world.roads.lanes[0] - 1
            and not (in_left & (np.abs(v.s[0] - v.s[0, 0]) < 60.0)).any()
        ):
            return world, lane
    raise AssertionError("no seed starts with a free lane to the ego's left")


def test_meta_action_lane_left_moves_one_lane_left():
    world, lane = _world_with_a_lane_to_the_left()
    world.step(world.meta_action(np.array([MetaAction.LANE_LEFT])))
    for _ in range(60):
        world.step(world.meta_action(np.array([MetaAction.IDLE])))
    assert world.vehicles.d[0, 0] == pytest.approx((lane + 1) * world.roads.lane_width[0], abs=0.2)


def test_command_change_left_makes_the_expert_change_left():
    world, lane = _world_with_a_lane_to_the_left()
    world.command[:] = Command.CHANGE_LEFT
    for _ in range(100):
        world.step(world.expert_action())
    assert round(world.vehicles.d[0, 0] / world.roads.lane_width[0]) == lane + 1


def test_a_lane_shift_retargets_the_lane_controller_only_where_the_lane_is_open():
    """+1 steers left into an open lane, -1 from the rightmost lane keeps the lane, 0 keeps it."""
    world = World(["highway"] * 3, [5, 5, 5])
    lane = world.perception.index.lane[:, 0].copy()
    assert (
        lane.tolist() == [0, 0, 0] and (world.roads.lanes >= 2).all()
    )  # rightmost lane, room to the left
    action = world.lane_shift_action(np.zeros(3), np.array([0.0, 0.9, -1.0]))
    steer = action.steer_rad
    assert action.target_lane.tolist() == [0, 1, 0]  # no lane to the right of lane 0
    assert (
        steer[1] > steer[0] and steer[2] == steer[0]
    )  # left is positive; a refused shift steers as keep
    with pytest.raises(DojoConfigError, match="Lane shifts"):
        world.lane_shift_action(np.zeros(3), np.array([0.0, np.nan, 0.0]))
