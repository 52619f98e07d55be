"""The auto-labeler's teacher on scenes built from the world: what it sees, what it does."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pytest

from dojo.data.autolabel import careful_labels, scene_frames
from dojo.data.autolabel.scene import CAREFUL_DRIVER, COLUMNS, KIND_NAMES
from dojo.data.autolabel.teacher import NO_GAP_M
from dojo.errors import CorruptLogError
from dojo.world.actions import EgoAction, careful_action
from dojo.world.camera import CameraRig
from dojo.world.scenarios import generate
from dojo.world.scene import scene_objects
from dojo.world.visibility import visible_objects
from dojo.world.world import World


def scene_table(
    world: World, steps: int, act: Callable[[World], EgoAction] | None = None
) -> tuple[pa.Table, np.ndarray]:
    """``steps`` decision steps of world 0 driven by ``act`` (default the expert), as scene rows
    and commands."""
    rows: dict[str, list[object]] = {c: [] for c in COLUMNS}
    commands = []
    for step in range(steps):
        objects = scene_objects(world, 0)
        for name in COLUMNS:
            values = [step / 10] * len(objects) if name == "t_s" else None
            field = "id" if name == "object_id" else name
            rows[name] += values if values is not None else getattr(objects, field).tolist()
        commands.append(int(world.command[0]))
        world.step(world.expert_action() if act is None else act(world))
    return pa.table(rows), np.array(commands)


@pytest.fixture(scope="module")
def stalled() -> tuple[pa.Table, np.ndarray, int]:
    family, seed = "stalled", 1_000_004
    world = World([family], [seed])
    obstacle = int(np.flatnonzero(~world.vehicles.driven[0] & world.vehicles.active[0])[-1])
    table, commands = scene_table(world, 60)
    return table, commands, obstacle


def test_scene_pivots_to_frames_with_the_ego_first(stalled: tuple[pa.Table, np.ndarray, int]):
    table, _, obstacle = stalled
    scene = scene_frames(table, "d1")
    assert scene.frames == 60
    assert scene.ids[0] == 0 and obstacle in scene.ids
    assert scene.present[:, 0].all()
    first = table.filter(pa.compute.equal(table["t_s"], 0.0)).to_pylist()
    for row in first:
        k = int(np.flatnonzero(scene.ids == row["object_id"])[0])
        assert scene.values["s_m"][0, k] == row["s_m"]
        assert KIND_NAMES[scene.kind[0, k]] == row["kind"]


def test_a_stalled_car_in_view_is_the_lead_and_out_of_view_it_is_not(
    stalled: tuple[pa.Table, np.ndarray, int],
):
    table, commands, obstacle = stalled
    scene = scene_frames(table, "d1")
    road = generate("stalled", 1_000_004).road
    everything = np.ones_like(scene.present)
    # no hindsight: a car ahead that changes into the ego's lane later would be the lead first
    seen = careful_labels(scene, road, commands, 28.0, everything, hindsight_s=0.0).values
    col = int(np.flatnonzero(scene.ids == obstacle)[0])
    leads = seen["lead_id"]
    assert (leads == obstacle).any(), "with everything visible the stalled car is the lead"
    at = int(np.flatnonzero(leads == obstacle)[0])
    hidden = everything.copy()
    hidden[:, col] = False
    unseen = careful_labels(scene, road, commands, 28.0, hidden, hindsight_s=0.0).values
    assert unseen["lead_id"][at] != obstacle
    assert unseen["lead_gap_m"][at] > seen["lead_gap_m"][at]
    # the obstacle stands still, so the ego closes on it at its own speed
    ego_speed = scene.values["speed_mps"][at, 0]
    assert seen["closing_mps"][at] == pytest.approx(ego_speed)
    assert seen["ttc_s"][at] == pytest.approx(seen["lead_gap_m"][at] / ego_speed)
    assert unseen["visible_objects"][at] == seen["visible_objects"][at] - 1


def test_labels_are_deterministic(stalled: tuple[pa.Table, np.ndarray, int]):
    table, commands, _ = stalled
    road = generate("stalled", 1_000_004).road
    scene = scene_frames(table, "d1")
    vis = np.ones_like(scene.present)
    a = careful_labels(scene, road, commands, 28.0, vis).values
    b = careful_labels(scene_frames(table, "d1"), road, commands, 28.0, vis).values
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


def test_the_future_lane_makes_a_cut_in_the_lead_before_it_crosses():
    world = World(["cut_in"], [1_000_002])
    table, commands = scene_table(world, 240)
    scene = scene_frames(table, "d2")
    road = generate("cut_in", 1_000_002).road
    lane = scene.lane
    ego_lane = lane[:, 0]
    # frames where some other car is in the next lane now and in the ego's lane 1 s later
    later = np.minimum(np.arange(scene.frames) + 10, scene.frames - 1)
    cutting = (
        (lane != ego_lane[:, None])
        & (lane[later] == ego_lane[later][:, None])
        & scene.present
        & scene.present[later]
    )
    cutting[:, 0] = False
    frames, cols = np.nonzero(cutting)
    assert len(frames), "the cut_in scenario should cut in within 24 s"
    vis = np.ones_like(scene.present)
    labels = careful_labels(scene, road, commands, 28.0, vis).values
    blind = careful_labels(scene, road, commands, 28.0, vis, hindsight_s=0.0).values
    f, k = int(frames[0]), int(cols[0])
    assert labels["lead_id"][f] == scene.ids[k]
    assert blind["lead_id"][f] != scene.ids[k], "without hindsight it is not the lead yet"


def test_next_lane_gaps_exist_only_where_there_is_a_lane(stalled):
    table, commands, _ = stalled
    scene = scene_frames(table, "d1")
    road = generate("stalled", 1_000_004).road
    labels = careful_labels(scene, road, commands, 28.0, np.ones_like(scene.present)).values
    lane = scene.lane[:, 0]
    right = labels["right_ahead_gap_m"]
    assert np.isnan(right[lane == 0]).all()
    assert not np.isnan(right[lane > 0]).any()
    left = labels["left_ahead_gap_m"]
    assert np.isnan(left[lane == road.lanes - 1]).all()
    assert (left[lane < road.lanes - 1] <= NO_GAP_M).all()


@pytest.mark.parametrize(
    "change, why",
    [
        ("backwards", "time goes backwards at t=0.050 s (after 0.100 s)"),
        ("no_ego", "the ego (object 0) is missing at t=0.100 s"),
        ("twice", "appears twice at t=0.000 s"),
        ("nan", "speed_mps is not a finite number at t=0.000 s"),
    ],
)
def test_a_scene_that_contradicts_itself_is_refused_with_the_frame(stalled, change, why):
    rows = stalled[0].slice(0, 60).to_pylist()
    first = [r for r in rows if r["t_s"] == 0.0]
    second = [dict(r, t_s=0.1) for r in first]
    if change == "backwards":
        rows = first + second + [dict(first[0], t_s=0.05)]
    elif change == "no_ego":
        rows = first + [r for r in second if r["object_id"] != 0]
    elif change == "twice":
        rows = first + [first[1]] + second
    elif change == "nan":
        rows = [dict(first[0], speed_mps=float("nan"))] + first[1:] + second
    with pytest.raises(CorruptLogError, match="Drive d9") as err:
        scene_frames(pa.Table.from_pylist(rows), "d9")
    assert why in str(err.value.reason)


def test_the_label_is_what_the_careful_driver_did_on_the_road():
    """The world's careful driver (same parameters, same visibility) drives; the labeler, shown
    only the log, must give its acceleration wherever nobody signals a change it cannot see."""
    family, seed = "stalled", 1_000_004
    world = World([family], [seed])
    for name, value in CAREFUL_DRIVER.items():
        getattr(world.vehicles, name)[0, 0] = value
    rig = CameraRig.default()
    seen: list[np.ndarray] = []
    done: list[float] = []

    def act(w: World) -> EgoAction:
        seen.append(visible_objects(w, rig)[0])
        action = careful_action(w, rig)
        done.append(float(action.accel_mps2[0]))
        return action

    table, commands = scene_table(world, 120, act)
    scene = scene_frames(table, "d3")
    mask = np.stack(seen)[:, scene.ids] & scene.present
    v0 = float(generate(family, seed).vehicles.v0[0, 0])
    labels = careful_labels(scene, generate(family, seed).road, commands, v0, mask, 0.0).values
    same = np.isclose(labels["accel_mps2"], np.array(done), atol=1e-9)
    assert same.mean() >= 0.95, f"only {same.mean():.0%} of the frames agree"


def test_objects_no_camera_shows_change_no_label(stalled: tuple[pa.Table, np.ndarray, int]):
    """The labeler drops the columns of hidden objects before the driver models run; the
    labels must be those of the scene with every object there and the hidden ones inactive."""
    from dojo.data.autolabel.scene import SceneFrames

    table, commands, _ = stalled
    road = generate("stalled", 1_000_004).road
    scene = scene_frames(table, "d1")
    rng = np.random.default_rng(3)
    vis = rng.uniform(size=scene.present.shape) < 0.5
    a = careful_labels(scene, road, commands, 28.0, vis).values
    # the same scene with 20 more objects, all hidden, interleaved among the real ones
    k, extra = scene.present.shape[1], 20
    cols = np.concatenate([np.arange(k), np.zeros(extra, dtype=np.int64)])
    order = np.concatenate([[0], rng.permutation(np.arange(1, k + extra))])
    pick = cols[order]

    def widen(x: np.ndarray) -> np.ndarray:
        return np.broadcast_to(x, scene.present.shape)[:, pick]

    crowded = SceneFrames(
        scene.t_s,
        widen(scene.ids),
        widen(scene.present),
        widen(scene.kind),
        {n: widen(v) for n, v in scene.values.items()},
        widen(scene.lane),
    )
    hidden = widen(vis) & (order < k)[None, :]
    hidden[:, 0] = vis[:, 0]
    b = careful_labels(crowded, road, commands, 28.0, hidden).values
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
