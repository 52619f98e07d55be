"""The scene and camera calibrations in drive logs: round trip, schemas, the fleet's logs, bad input."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest
from mcap.reader import make_reader

from dojo.drivelog import DriveLogWriter, read_drive_log, read_scene, video_packets
from dojo.drivelog.scene import CUBE_TOLERANCE_M, YAW_TOLERANCE_RAD
from dojo.errors import ConfigError, CorruptLogError
from dojo.fleet.config import DriveConfig
from dojo.fleet.drive import Fleet
from dojo.world import World
from dojo.world.camera import CameraRig
from dojo.world.scene import FIELD_NAMES, KIND_NAMES, SceneObjects, scene_objects
from tests.drivelog.rewrite import rewrite

STEPS = 25  # 2.5 s at 10 Hz: keyframes at 0, 1 and 2 s
FIXTURE = Path(__file__).parents[1] / "fixtures" / "drivelog" / "v-2026-12.mcap"


def drive_scenes(family: str = "stalled", seed: int = 4) -> list[SceneObjects]:
    """The scene of a real world at each of STEPS steps (the expert drives)."""
    world = World(family, seeds=[seed])
    scenes = []
    for _ in range(STEPS):
        scenes.append(scene_objects(world, 0))
        world.step(world.expert_action())
    return scenes


@pytest.fixture(scope="module")
def scenes() -> list[SceneObjects]:
    return drive_scenes()


@pytest.fixture(scope="module")
def log_path(scenes: list[SceneObjects], tmp_path_factory: pytest.TempPathFactory) -> Path:
    rig = CameraRig.default()
    path = tmp_path_factory.mktemp("scene") / "drive.mcap"
    with DriveLogWriter.from_rig(path, rig) as log:
        for step, objects in enumerate(scenes):
            t = step / 10
            log.write_frame(t, np.full(rig.image_shape, 90, dtype=np.uint8))
            log.write_scene(t, objects)
    return path


def assert_same_scene(got: SceneObjects, want: SceneObjects) -> None:
    """The objects read back are the ones written, to the cube's rounding."""
    for name in FIELD_NAMES:
        a, b = getattr(got, name), getattr(want, name)
        if name == "yaw_rad":
            assert np.abs(np.remainder(a - b + np.pi, 2 * np.pi) - np.pi).max() < YAW_TOLERANCE_RAD
        elif name in ("x_m", "y_m", "length_m", "width_m", "height_m"):
            np.testing.assert_allclose(a, b, rtol=0, atol=CUBE_TOLERANCE_M)
        else:
            np.testing.assert_array_equal(a, b)


def raw_messages(path: Path, topic: str) -> list[tuple[int, dict]]:
    with open(path, "rb") as f:
        return [
            (m.log_time, json.loads(m.data))
            for _, _, m in make_reader(f, validate_crcs=True).iter_messages([topic])
        ]


def schema_of(path: Path, topic: str) -> tuple[str, dict]:
    with open(path, "rb") as f:
        summary = make_reader(f).get_summary()
    assert summary is not None
    (channel,) = [c for c in summary.channels.values() if c.topic == topic]
    schema = summary.schemas[channel.schema_id]
    return schema.name, json.loads(schema.data)


# --------------------------------------------------------------------------------- the scene
def test_the_world_gives_every_active_object_with_the_ego_first() -> None:
    world = World("cut_in", seeds=[2, 5])
    for w in range(2):
        objects = scene_objects(world, w)
        assert len(objects) == int(world.vehicles.active[w].sum()) > 5
        assert objects.id[0] == 0 and objects.kind[0] == "ego"
        assert set(objects.kind[1:].tolist()) <= set(KIND_NAMES) - {"ego"}
        np.testing.assert_array_equal(objects.s_m, world.vehicles.s[w][world.vehicles.active[w]])
        assert np.all(objects.height_m > 0) and np.all(np.abs(objects.yaw_rad) <= math.pi)


def test_scene_round_trip_through_the_official_mcap_reader(
    log_path: Path, scenes: list[SceneObjects]
) -> None:
    raw = raw_messages(log_path, "/scene")
    assert [ns for ns, _ in raw] == [round(step / 10 * 1e9) for step in range(STEPS)]
    for (_, message), objects in zip(raw, scenes, strict=True):
        assert message["deletions"][0]["type"] == 1  # ALL: each message is the whole scene
        entities = message["entities"]
        assert [e["id"] for e in entities] == [str(i) for i in objects.id.tolist()]
        for e, i in zip(entities, range(len(objects)), strict=True):
            cube = e["cubes"][0]
            meta = {kv["key"]: kv["value"] for kv in e["metadata"]}
            assert e["frame_id"] == "world" and meta["kind"] == objects.kind[i]
            # the cube to 1 mm; the Frenet position and the speed exact
            box = (cube["pose"]["position"][k] for k in "xyz")
            want = (objects.x_m[i], objects.y_m[i], objects.height_m[i] / 2)
            assert tuple(box) == pytest.approx(want, abs=CUBE_TOLERANCE_M)
            size = cube["size"]
            assert (size["x"], size["y"], size["z"]) == pytest.approx(
                (objects.length_m[i], objects.width_m[i], objects.height_m[i]),
                abs=CUBE_TOLERANCE_M,
            )
            q = cube["pose"]["orientation"]
            yaw = 2 * math.atan2(q["z"], q["w"])
            assert abs(math.remainder(yaw - objects.yaw_rad[i], 2 * math.pi)) < YAW_TOLERANCE_RAD
            assert float(meta["s_m"]) == objects.s_m[i] and int(meta["lane"]) == objects.lane[i]
            assert float(meta["speed_mps"]) == objects.speed_mps[i]
    # the reader gives back the same columns: the cube's to its rounding, the others exact
    scene = read_scene(log_path)
    assert len(scene) == STEPS and scene.times_s.tolist() == [s / 10 for s in range(STEPS)]
    for step, objects in enumerate(scenes):
        assert_same_scene(scene.frame(step), objects)
    assert len(scene.t_s) == sum(len(o) for o in scenes)
    assert read_drive_log(log_path).has_scene


def test_scene_and_calibration_messages_validate_against_their_channel_schemas(
    log_path: Path,
) -> None:
    jsonschema_rs = pytest.importorskip("jsonschema_rs")
    name, schema = schema_of(log_path, "/scene")
    assert name == "foxglove.SceneUpdate"
    entity = schema["properties"]["entities"]["items"]
    validator = jsonschema_rs.validator_for(schema)
    messages = [m for _, m in raw_messages(log_path, "/scene")]
    assert all(validator.is_valid(m) for m in messages)
    # Foxglove's SceneEntity: every field required and written, the primitives not drawn empty
    first = messages[0]["entities"][0]
    assert entity["required"] == list(first) and len(first) == 14
    empty = ("arrows", "spheres", "cylinders", "lines", "triangles", "texts", "models")
    assert all(e[k] == [] for e in messages[0]["entities"] for k in empty)
    spoiled = json.loads(json.dumps(messages[0]))
    del spoiled["entities"][0]["cubes"][0]["size"]
    assert not validator.is_valid(spoiled)  # the schema can fail
    name, schema = schema_of(log_path, "/camera/front/calibration")
    assert name == "foxglove.CameraCalibration"
    validator = jsonschema_rs.validator_for(schema)
    assert all(validator.is_valid(m) for _, m in raw_messages(log_path, "/camera/rear/calibration"))


def test_calibration_projects_each_pixel_ray_back_onto_its_pixel(log_path: Path) -> None:
    """K applied to the ray camera.py casts through pixel (v, u) lands on (u, v)."""
    rig = CameraRig.default()
    log = read_drive_log(log_path)
    for cam in rig.cameras:
        raw = raw_messages(log_path, f"/camera/{cam.name}/calibration")
        # at t = 0 and at each later keyframe, so a window cut from the log has it
        assert [ns for ns, _ in raw] == [0, 1_000_000_000, 2_000_000_000]
        cal = log.camera_calibrations[cam.name]
        assert (cal["width"], cal["height"], cal["frame_id"]) == (
            cam.width_px,
            cam.height_px,
            f"camera_{cam.name}",
        )
        assert cal["distortion_model"] == "plumb_bob" and cal["D"] == [0.0] * 5
        k = np.array(cal["K"]).reshape(3, 3)
        p = np.array(cal["P"]).reshape(3, 4)
        np.testing.assert_array_equal(p[:, :3], k)
        f = cam.focal_px
        for v, u in ((0, 0), (cam.height_px - 1, cam.width_px - 1), (20, 33)):
            right = (u + 0.5 - cam.width_px / 2) / f  # the model in dojo.world.camera
            up = (cam.horizon_row * cam.height_px - (v + 0.5)) / f
            x, y, w = k @ np.array([right, -up, 1.0])  # optical frame: x right, y down, z forward
            assert (x / w, y / w) == pytest.approx((u, v), abs=1e-9)


def test_an_old_log_has_no_scene_and_still_reads() -> None:
    log = read_drive_log(FIXTURE)
    assert not log.has_scene and log.camera_calibrations == {}
    scene = read_scene(FIXTURE)
    assert len(scene) == 0 and len(scene.t_s) == 0
    assert set(scene.columns) == set(FIELD_NAMES)


# ------------------------------------------------------------------------------ the fleet
def test_fleet_logs_hold_a_scene_every_step_with_the_ego_at_its_pose(tmp_path: Path) -> None:
    config = DriveConfig(
        cars=2,
        minutes=0.1,
        mode="manual",
        out=str(tmp_path),
        families=("stalled", "cut_in"),
        logging="triggers",
    )
    summary = Fleet(config).run()
    assert summary.files
    for file in summary.files:
        log = read_drive_log(file)
        scene = read_scene(file)
        # one scene at t = 0 (the first frame) and one with every pose and telemetry record
        pose_t = log.poses[:, 0]
        assert len(scene) == len(pose_t) + 1 and scene.times_s[0] == 0.0
        np.testing.assert_allclose(scene.times_s[1:], pose_t, atol=1e-9)
        for i, (pose, tele) in enumerate(zip(log.poses, log.telemetry, strict=True)):
            objects = scene.frame(i + 1)
            ego = np.flatnonzero(objects.id == 0)
            assert len(ego) == 1 and objects.kind[ego[0]] == "ego"
            xy = (objects.x_m[ego[0]], objects.y_m[ego[0]])
            assert xy == pytest.approx(pose[1:3], abs=CUBE_TOLERANCE_M)
            dyaw = math.remainder(objects.yaw_rad[ego[0]] - pose[4], 2 * math.pi)
            assert abs(dyaw) < YAW_TOLERANCE_RAD
            assert objects.speed_mps[ego[0]] == tele["speed_mps"]
            assert objects.lane[ego[0]] == tele["lane"]
            assert len(objects) > 1 and (objects.kind[objects.id != 0] != "ego").all()
        # every camera frame of the trigger windows has a scene at its time
        frames = [p.t_s for p in video_packets(file, "front")]
        assert set(np.round(frames, 6)) <= set(np.round(scene.times_s, 6))


# ------------------------------------------------------------------------------ bad input
def test_bad_scene_objects_are_refused_naming_the_field(
    scenes: list[SceneObjects], tmp_path: Path
) -> None:
    good = scenes[0]
    n = len(good)
    bad: dict[str, tuple[Callable[[], SceneObjects], str]] = {
        "x_m": (lambda: replace(good, x_m=good.x_m[:-1]), "x_m has"),
        "speed_mps": (
            lambda: replace(good, speed_mps=np.where(good.id == 2, np.nan, 1.0)),
            "speed_mps",
        ),
        "id": (lambda: replace(good, id=np.zeros(n, dtype=np.int64)), "id 0 repeats"),
        "kind": (lambda: replace(good, kind=np.array(["car"] * (n - 1) + ["bus"])), "kind='bus'"),
        "length_m": (lambda: replace(good, length_m=-good.length_m), "length_m"),
        "lane": (lambda: replace(good, lane=good.lane + 0.5), "lane must hold whole numbers"),
        "yaw_rad": (lambda: replace(good, yaw_rad=good.yaw_rad[:, None]), "yaw_rad must be a 1-D"),
    }
    for name, (make, words) in bad.items():
        with pytest.raises(ConfigError, match=words) as err:
            make()  # the arguments are checked where the struct is built
        assert name in str(err.value)
    path = tmp_path / "bad.mcap"
    with DriveLogWriter(path, ["front"], 32, 16) as log:
        log.write_scene(0.0, good)
        with pytest.raises(ConfigError, match="must be a SceneObjects"):
            log.write_scene(0.1, {f.name: getattr(good, f.name) for f in fields(good)})  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="later than the previous scene"):
            log.write_scene(0.0, good)
        with pytest.raises(ConfigError, match="t_s"):
            log.write_scene(float("nan"), good)
        log.write_scene(0.1, scenes[1])
    # what was written before and after the refused calls is all there
    scene = read_scene(path)
    assert scene.times_s.tolist() == [0.0, 0.1]
    assert_same_scene(scene.frame(1), scenes[1])


def test_a_corrupt_scene_message_is_a_clear_error(log_path: Path, tmp_path: Path) -> None:
    for i, data in enumerate((b'{"entities": [{"id": "1"}]}', b"not json", b'{"deletions": []}')):
        spoiled = tmp_path / f"spoiled{i}.mcap"
        rewrite(log_path, spoiled, replace=("/scene", 7, data))
        with pytest.raises(CorruptLogError) as err:
            read_scene(spoiled)
        assert err.value.path == str(spoiled)
        assert "/scene message at 0.700 s" in err.value.reason
        read_drive_log(spoiled)  # the rest of the log still reads
    # a scene that parses but is not one: two objects with one id
    (_, message), *_ = raw_messages(log_path, "/scene")[3:]
    message["entities"][1]["id"] = message["entities"][0]["id"]
    spoiled = tmp_path / "twins.mcap"
    rewrite(log_path, spoiled, replace=("/scene", 3, json.dumps(message).encode()))
    with pytest.raises(CorruptLogError, match=r"at 0\.300 s .*repeats"):
        read_scene(spoiled)


def test_a_scene_spelled_another_way_reads_the_same(log_path: Path, tmp_path: Path) -> None:
    """Another writer's spelling of the schema (key order, spaces) goes through json.loads."""
    (_, message), *_ = raw_messages(log_path, "/scene")[6:]
    message["entities"] = [dict(reversed(e.items())) for e in message["entities"]]
    respelled = tmp_path / "respelled.mcap"
    rewrite(log_path, respelled, replace=("/scene", 6, json.dumps(message, indent=1).encode()))
    ours, theirs = read_scene(log_path), read_scene(respelled)
    for name in FIELD_NAMES:
        np.testing.assert_array_equal(theirs.columns[name], ours.columns[name])
