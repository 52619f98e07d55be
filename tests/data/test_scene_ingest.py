"""The scene in the clip store: ingest -> the catalog's ``scene`` view, old logs, corrupt scenes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from mcap.reader import make_reader

from dojo.data.catalog import connect, query
from dojo.data.ingest import ingest
from dojo.drivelog import DriveLogWriter, read_scene
from dojo.drivelog.scene import CUBE_TOLERANCE_M
from dojo.errors import CorruptLogError
from dojo.world import World
from dojo.world.camera import CameraRig, ego_pose
from dojo.world.scene import FIELD_NAMES, SceneObjects, scene_objects
from tests.data.test_ingest import tree_digest
from tests.drivelog.rewrite import rewrite
from tests.drivelog.test_scene import assert_same_scene

FIXTURE = Path(__file__).parents[1] / "fixtures" / "drivelog" / "v-2026-12.mcap"
STEPS = 30
COLUMNS = {"id": "object_id"} | {n: n for n in FIELD_NAMES if n != "id"}


def write_drive(path: Path, family: str, seed: int) -> list[SceneObjects]:
    """A real world driven by its expert for STEPS steps, logged; the scenes it had."""
    world = World(family, seeds=[seed])
    rig = CameraRig.default()
    scenes = []
    with DriveLogWriter.from_rig(path, rig, metadata={"family": family, "seed": seed}) as log:
        for step in range(STEPS):
            t = step / 10
            scenes.append(scene_objects(world, 0))
            log.write_frame(t, np.full(rig.image_shape, 40 + step, dtype=np.uint8))
            x, y, yaw = (float(a[0]) for a in ego_pose(world.roads, world.vehicles, np.array([0])))
            log.write_pose(t, x, y, 0.0, yaw)
            log.write_scene(t, scenes[-1])
            world.step(world.expert_action())
    return scenes


@pytest.fixture(scope="module")
def drives(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[SceneObjects]]]:
    folder = tmp_path_factory.mktemp("scene_logs")
    worlds = {}
    for family, seed in (("stalled", 1), ("cut_in", 2)):
        worlds[family] = write_drive(folder / f"{family}.mcap", family, seed)
    return folder, worlds


def test_the_scene_view_matches_the_world(
    drives: tuple[Path, dict[str, list[SceneObjects]]], tmp_path: Path
) -> None:
    folder, worlds = drives
    store = tmp_path / "store"
    summary = ingest([folder], store, workers=1)
    assert summary.files_ingested == 2
    con = connect(store)
    assert query(store, "SELECT bool_and(has_scene) FROM drives")[1] == [(True,)]
    for family, scenes in worlds.items():
        rel = con.sql(
            f"SELECT s.* FROM scene s JOIN drives d USING (drive_id) WHERE d.family = '{family}' "
            "ORDER BY t_s, object_id"
        )
        table = rel.arrow().read_all()
        assert table.num_rows == sum(len(o) for o in scenes)
        t = table.column("t_s").to_numpy()
        assert np.unique(t).tolist() == [step / 10 for step in range(STEPS)]
        # each moment is tied to its camera frame (frame k at k / 10 s)
        np.testing.assert_array_equal(table.column("frame").to_numpy(), np.round(t * 10))
        for step, objects in enumerate(scenes):
            rows = t == step / 10
            order = np.argsort(objects.id)
            got = SceneObjects(
                **{
                    f: table.column(c).to_numpy(zero_copy_only=False)[rows]
                    for f, c in COLUMNS.items()
                }
            )
            assert_same_scene(got, objects.take(order))
    # the ego's rows are the logged poses
    sql = (
        "SELECT count(*), max(abs(s.x_m - p.x_m) + abs(s.y_m - p.y_m)) FROM scene s "
        "JOIN poses p USING (drive_id, t_s) WHERE s.kind = 'ego'"
    )
    ((n, far),) = query(store, sql)[1]
    assert n == 2 * STEPS and far < 2 * CUBE_TOLERANCE_M
    # idempotent: the same files again change nothing
    before = tree_digest(store)
    again = ingest([folder], store, workers=1)
    assert again.files_already == 2 and tree_digest(store) == before


def test_an_old_log_ingests_without_scene_rows(tmp_path: Path) -> None:
    store = tmp_path / "store"
    assert ingest([FIXTURE], store, workers=1).files_ingested == 1
    assert query(store, "SELECT has_scene FROM drives")[1] == [(False,)]
    assert query(store, "SELECT count(*) FROM scene")[1] == [(0,)]
    # a store ingested before the scene table existed: the view is there, typed and empty
    for f in (store / "drives").glob("*/scene.parquet"):
        f.unlink()
    names, rows = query(store, "SELECT * FROM scene")
    assert rows == [] and names[:4] == ["drive_id", "t_s", "frame", "object_id"]


def test_a_corrupt_scene_is_quarantined_and_nothing_stored_is_lost(
    drives: tuple[Path, dict[str, list[SceneObjects]]], tmp_path: Path
) -> None:
    folder, _ = drives
    store = tmp_path / "store"
    ingest([folder / "stalled.mcap"], store, workers=1)
    before = tree_digest(store)
    bad = tmp_path / "bad"
    bad.mkdir()
    with open(folder / "cut_in.mcap", "rb") as f:
        messages = [json.loads(m.data) for _, _, m in make_reader(f).iter_messages(["/scene"])]
    nan_speed = messages[12]
    nan_speed["entities"][2]["metadata"][1]["value"] = "nan"
    rewrite(
        folder / "cut_in.mcap",
        bad / "nan.mcap",
        replace=("/scene", 12, json.dumps(nan_speed).encode()),
    )
    rewrite(folder / "cut_in.mcap", bad / "cut.mcap", replace=("/scene", 5, b'{"entities": [{'))
    summary = ingest([bad], store, workers=1).as_dict()
    reasons = {Path(q["file"]).name: q["reason"] for q in summary["quarantined"]}
    assert summary["files_ingested"] == 0 and summary["files_quarantined"] == 2
    assert "/scene message at 1.200 s" in reasons["nan.mcap"] and "speed_mps" in reasons["nan.mcap"]
    assert "/scene message at 0.500 s" in reasons["cut.mcap"]
    assert tree_digest(store) == before
    assert query(store, "SELECT count(DISTINCT drive_id) FROM scene")[1] == [(1,)]
    assert not list((store / "tmp").iterdir())
    # the reader says the same
    with pytest.raises(CorruptLogError, match="1.200 s"):
        read_scene(bad / "nan.mcap")
