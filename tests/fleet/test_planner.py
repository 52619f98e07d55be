"""The perception -> planner policy: IDM on the predicted lead, gap-gated lane changes, a tracker."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dojo.errors import DojoConfigError
from dojo.eval.evaluate import evaluate
from dojo.fleet.config import DriveConfig
from dojo.fleet.planner import LeadTracker, PlannerConfig, plan, seen_by_rig
from dojo.fleet.policy import PerceptionPlanner, make_policy
from dojo.nets.checkpoint import save_atomic
from dojo.nets.occupancy import OccupancyConfig, PerceptionNet
from dojo.nets.targets import GAP_REACH_M, PLANNER_TARGETS
from dojo.world.actions import Command
from dojo.world.camera import CameraRig
from dojo.world.drivers import NO_LEADER_GAP_M, idm_accel
from dojo.world.dynamics import DT_S
from dojo.world.world import World
from tests.world.test_careful import stalled_ahead

FREE = GAP_REACH_M  # a censored gap: free road
COL = {name: i for i, name in enumerate(PLANNER_TARGETS)}


def targets(n: int, **values: float) -> np.ndarray:
    """(n, 7) decoded targets: free road everywhere but ``values`` (closing etc. 0)."""
    out = np.zeros((n, len(PLANNER_TARGETS)))
    for name in ("lead_gap_m", "left_ahead_gap_m", "left_behind_gap_m"):
        out[:, COL[name]] = FREE
    out[:, COL["right_ahead_gap_m"]] = out[:, COL["right_behind_gap_m"]] = FREE
    for name, value in values.items():
        out[:, COL[name]] = value
    return out


def ego_idm(world: World, gap_m: float, closing_mps: float) -> np.ndarray:
    veh = world.vehicles
    return idm_accel(
        veh.v[:, 0],
        veh.v0[:, 0],
        np.full(world.num_worlds, gap_m),
        np.full(world.num_worlds, closing_mps),
        veh.a_max[:, 0],
        veh.b_comf[:, 0],
        veh.s0[:, 0],
        veh.t_headway[:, 0],
    )


def test_speed_is_idm_on_the_predicted_lead_and_a_censored_gap_is_free_road() -> None:
    world = World("highway", seeds=[3, 4])
    lead = plan(world, targets(2, lead_gap_m=30.0, closing_mps=8.0))
    assert np.allclose(lead.accel_mps2, ego_idm(world, 30.0, 8.0))
    free = plan(world, targets(2))
    assert np.allclose(free.accel_mps2, ego_idm(world, NO_LEADER_GAP_M, 0.0))
    # the more urgent of the two heads wins: gap x inverse TTC above the predicted closing
    urgent = plan(world, targets(2, lead_gap_m=30.0, closing_mps=2.0, inv_ttc_per_s=0.5))
    assert np.allclose(urgent.accel_mps2, ego_idm(world, 30.0, 15.0))


def commanded(command: int) -> World:
    world = World("highway", seeds=[2])
    world.vehicles.d[0, 0] = world.roads.lane_width[0]  # lane 1 of at least 2: both sides open
    world.vehicles.target_lane[0, 0] = 1
    world.command[:] = command
    return world


def test_a_commanded_change_waits_for_safe_gaps_on_that_side() -> None:
    world = commanded(Command.CHANGE_LEFT)
    assert world.roads.lanes[0] >= 3 and world.step_count[0] == 0  # a decision step
    assert plan(world, targets(1)).target_lane[0] == 2
    for short in ("left_ahead_gap_m", "left_behind_gap_m"):
        assert plan(world, targets(1, **{short: 3.0})).target_lane[0] == 1
    right = commanded(Command.CHANGE_RIGHT)
    assert plan(right, targets(1)).target_lane[0] == 0
    assert plan(commanded(Command.KEEP_LANE), targets(1)).target_lane[0] == 1  # no reason to go


def test_keep_lane_leaves_only_for_a_lead_far_slower_than_wanted() -> None:
    world = commanded(Command.KEEP_LANE)
    v = float(world.vehicles.v[0, 0])
    stalled = targets(1, lead_gap_m=50.0, closing_mps=v, right_ahead_gap_m=20.0)
    assert plan(world, stalled).target_lane[0] == 2  # the side with more room ahead
    slow = targets(1, lead_gap_m=50.0, closing_mps=0.1 * v)
    assert plan(world, slow).target_lane[0] == 1  # a lead nearly at our speed: follow it


def test_the_unseen_follower_is_assumed_to_move_so_a_stopped_ego_needs_room_behind() -> None:
    world = commanded(Command.CHANGE_LEFT)
    world.vehicles.v[0, 0] = 0.0
    cfg = PlannerConfig()
    need = cfg.behind_headway_s * cfg.follower_share * float(world.vehicles.v0[0, 0])
    assert need > cfg.min_side_gap_m
    assert plan(world, targets(1, left_behind_gap_m=need - 1.0)).target_lane[0] == 1
    assert plan(world, targets(1, left_behind_gap_m=need + 1.0)).target_lane[0] == 2


def test_the_planner_rejects_targets_of_the_wrong_shape() -> None:
    world = World("highway", seeds=[1, 2])
    with pytest.raises(DojoConfigError, match=r"seen must be \(2, 7\)"):
        plan(world, np.zeros((3, 7)))
    with pytest.raises(DojoConfigError, match="follower_share"):
        PlannerConfig(follower_share=1.5)


def test_the_tracker_carries_a_lead_out_of_sight_and_lets_a_seen_one_win() -> None:
    world = World("highway", seeds=[5])
    tracker = LeadTracker(keep_s=0.25)
    world.step_count[:] = 7  # mid-drive
    first = tracker.update(world, targets(1, lead_gap_m=40.0, closing_mps=10.0))
    assert first[0, COL["lead_gap_m"]] == 40.0
    gone = tracker.update(world, targets(1))  # out of sight one step later
    assert gone[0, COL["lead_gap_m"]] == pytest.approx(40.0 - 10.0 * DT_S)
    assert gone[0, COL["closing_mps"]] == 10.0
    seen = tracker.update(world, targets(1, lead_gap_m=60.0, closing_mps=-2.0))
    assert seen[0, COL["lead_gap_m"]] == 60.0  # the lead in sight, not the carried one
    for _ in range(3):
        last = tracker.update(world, targets(1))
    assert last[0, COL["lead_gap_m"]] == FREE  # kept no longer than keep_s
    tracker.update(world, targets(1, lead_gap_m=20.0, closing_mps=5.0))
    world.step_count[:] = 0  # the car's next drive starts
    assert tracker.update(world, targets(1))[0, COL["lead_gap_m"]] == FREE


def test_the_planner_baseline_brakes_for_a_stalled_car_the_rig_shows() -> None:
    rig = CameraRig.default()
    world = stalled_ahead([60.0, 150.0])  # both in view (the default rig shows 150 m)
    seen = seen_by_rig(world, rig)
    assert seen[0, COL["lead_gap_m"]] == pytest.approx(60.0, abs=0.5)
    assert seen[1, COL["lead_gap_m"]] == pytest.approx(
        FREE
    )  # beyond the reach: censored, as the labels are
    act = make_policy("planner", rig).act(world, None)
    assert act.accel_mps2[0] < -2.0 and act.accel_mps2[1] > -0.5


def perception_checkpoint(path: Path, kind: str = "perception") -> Path:
    rig = CameraRig.default()
    cam = rig.cameras[0]
    cfg = OccupancyConfig(
        cameras=len(rig.cameras),
        height=cam.height_px,
        width=cam.width_px,
        frames=1,
        size="tiny",
        planner=len(PLANNER_TARGETS),
    )
    torch.manual_seed(0)
    net = PerceptionNet(cfg)
    payload = {
        "format": "dojo.checkpoint",
        "version": 1,
        "kind": kind,
        "net_config": cfg.to_dict(),
        "model": net.state_dict(),
        "extra": {},
    }
    return save_atomic(payload, path)


def test_a_perception_checkpoint_drives_the_planner_in_an_evaluation(tmp_path: Path) -> None:
    ckpt = perception_checkpoint(tmp_path / "perception.pt")
    policy = make_policy(f"planner:{ckpt}", CameraRig.default())
    assert isinstance(policy, PerceptionPlanner) and policy.frames == 1
    suites = tmp_path / "suites.toml"
    suites.write_text('[suites.stalled]\nfamilies = ["stalled"]\nseeds = [1000000, 1000100]\n')
    out = evaluate(
        f"planner:{ckpt}", suite="stalled", suites_file=suites, decisions=60, cars=2, workers=1
    )
    assert out["decisions"] >= 60 and out["policy"] == f"planner:{ckpt}"
    assert out["critical_interventions"] >= 0 and "families" in out


def test_bad_planner_checkpoints_get_one_clear_error(tmp_path: Path) -> None:
    rig = CameraRig.default()
    with pytest.raises(DojoConfigError, match="does not exist"):
        make_policy(f"planner:{tmp_path / 'missing.pt'}", rig)
    policy_kind = perception_checkpoint(tmp_path / "policy.pt", kind="policy")
    with pytest.raises(DojoConfigError, match="holds a 'policy' checkpoint, not a 'perception'"):
        make_policy(f"planner:{policy_kind}", rig)
    (tmp_path / "torn.pt").write_bytes(perception_checkpoint(tmp_path / "ok.pt").read_bytes()[:99])
    with pytest.raises(DojoConfigError, match="truncated or corrupt"):
        make_policy(f"planner:{tmp_path / 'torn.pt'}", rig)


def test_a_drive_log_names_a_planner_checkpoint_relative_to_the_logs(tmp_path: Path) -> None:
    cfg = DriveConfig(out=str(tmp_path), mode="autonomous", policy=f"planner:{tmp_path}/m/p.pt")
    assert cfg.as_metadata()["policy"] == "planner:m/p.pt"
