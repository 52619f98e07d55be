"""The fleet: modes x on-board baselines, the safety driver against the world's ground truth,
upload windows, and drive logs read back with the official mcap reader and PyAV."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dojo.drivelog import decode_video, is_keyframe, read_drive_log, video_packets
from dojo.errors import DojoConfigError
from dojo.fleet.config import DriveConfig, SafetyConfig, TriggerConfig
from dojo.fleet.drive import DriveSummary, Fleet, drive
from dojo.fleet.policy import NetworkPolicy
from dojo.world.world import DT_S

SUMMARY_KEYS = {
    "cars",
    "decisions",
    "miles",
    "critical_interventions",
    "noncritical_interventions",
    "collisions",
    "files",
}


def _run(
    tmp: Path, capture: bool = False, **kw: Any
) -> tuple[DriveSummary, dict[tuple[int, int], list[np.ndarray]]]:
    """Drive; with ``capture``, also keep the images each car rendered, by (car, step of its drive)."""
    config = DriveConfig(out=str(tmp), **kw)
    fleet = Fleet(config)
    frames: dict[tuple[int, int], list[np.ndarray]] = {}
    if capture:

        def keep(_: DriveSummary) -> None:
            for c in range(config.cars):
                restarted = (
                    fleet.world.step_count[c] == 0
                )  # the step ended a drive: its frame was the last
                frames.setdefault((c, int(fleet.drive_no[c]) - restarted), []).append(
                    fleet.history[c, :, -1].copy()
                )

        fleet.on_step = keep
    return fleet.run(), frames


def _events(summary: DriveSummary) -> list[dict]:
    return [e for f in summary.files for e in read_drive_log(f).events]


@pytest.mark.parametrize(
    ("mode", "policy"),
    [
        ("manual", "naive"),
        ("shadow", "naive"),
        ("shadow", "expert"),
        ("autonomous", "naive"),
        ("autonomous", "expert"),
        ("mixed", "naive"),
    ],
)
def test_every_mode_and_baseline_drives_and_its_logs_agree_with_its_summary(
    tmp_path: Path, mode: str, policy: str
) -> None:
    summary, _ = _run(
        tmp_path,
        cars=3,
        minutes=0.25,
        mode=mode,
        policy=policy,
        families=("stalled", "cut_in", "dense"),
        drive_s=6.0,
    )
    out = summary.as_dict()
    assert out.keys() >= SUMMARY_KEYS
    assert out["cars"] == 3 and out["decisions"] == 3 * 150
    assert 0.1 < out["miles"] < 3 * 15 * 40 / 1609  # some driving, under 40 m/s
    assert (
        out["drives"] == len(out["files"]) >= 3 * 2
    )  # 15 s in 6 s drives: at least 3 drives a car... minus crashes
    events = _events(summary)
    starts = [e for e in events if e["kind"] == "intervention_start"]
    assert (
        sum(e["critical"] for e in starts) >= out["critical_interventions"]
    )  # upgrades log a second, critical start
    assert sum(not e["critical"] for e in starts) >= out["noncritical_interventions"]
    assert sum(e["kind"] == "collision" for e in events) == out["collisions"]
    assert sum(e["kind"] == "shadow_disagreement" for e in events) == out["shadow_disagreements"]
    if mode in ("manual", "shadow"):
        assert not starts and out["critical_interventions"] == out["noncritical_interventions"] == 0
    if mode == "manual":
        assert out["shadow_disagreements"] == 0 and out["policy"] == "none"
    for f in out["files"]:
        log = read_drive_log(f)
        assert log.status == "complete" and log.chunk_compressions == {"zstd"}
        assert log.config["car_id"].startswith("car-") and log.config["mode"] in (
            "manual",
            "shadow",
            "autonomous",
        )
        n_frames = log.message_counts["/camera/front"]
        assert n_frames == len(log.telemetry) == len(log.poses) > 0
        assert {t["driver"] for t in log.telemetry} <= {"human", "network", "safety_driver"}


def test_the_video_decodes_to_the_frames_the_cars_rendered(tmp_path: Path) -> None:
    summary, frames = _run(
        tmp_path, capture=True, cars=2, minutes=0.1, mode="manual", families=("dense",), drive_s=4.0
    )
    for f in summary.files[:3]:
        log = read_drive_log(f)
        car, drive_no = int(log.config["car_id"][4:]), int(log.config["drive"])
        rendered = np.stack(frames[(car, drive_no)])  # (steps, cams, H, W)
        for cam_i, cam in enumerate(log.cameras):
            decoded = decode_video(f, cam)
            assert decoded.shape == (len(rendered), 48, 96)
            mse = np.mean((decoded.astype(np.float64) - rendered[:, cam_i]) ** 2)
            psnr = 10 * np.log10(255**2 / max(mse, 1e-12))
            assert psnr > 40.0, (f, cam, psnr)
            keys = [i for i, p in enumerate(video_packets(f, cam)) if is_keyframe(p.data)]
            assert keys == list(range(0, len(rendered), 10))  # every 1 s at 10 Hz


def test_shadow_mode_leaves_the_human_driving_exactly_as_in_manual(tmp_path: Path) -> None:
    kw: dict[str, Any] = {"cars": 2, "minutes": 0.4, "families": ("stalled",), "drive_s": 30.0}
    manual, _ = _run(tmp_path / "m", mode="manual", **kw)
    shadow, _ = _run(tmp_path / "s", mode="shadow", policy="naive", **kw)
    for a, b in zip(sorted(manual.files), sorted(shadow.files), strict=True):
        speeds_a = [t["speed_mps"] for t in read_drive_log(a).telemetry]
        speeds_b = [t["speed_mps"] for t in read_drive_log(b).telemetry]
        assert speeds_a == speeds_b
    assert (
        shadow.shadow_disagreements > 0
    )  # the naive net keeps its lane behind the stalled car: it disagrees
    assert manual.miles == shadow.miles


def test_the_safety_driver_takes_over_where_the_ground_truth_ttc_says(tmp_path: Path) -> None:
    summary, _ = _run(
        tmp_path,
        cars=4,
        minutes=0.5,
        mode="autonomous",
        policy="naive",
        families=("stalled", "cut_in"),
        drive_s=30.0,
    )
    assert summary.critical_interventions >= 2  # a naive net drives into stalled cars and cut-ins
    threshold = SafetyConfig().ttc_critical_s
    reaction = SafetyConfig().reaction_s
    for f in summary.files:
        log = read_drive_log(f)
        starts = [
            e["t_s"] for e in log.events if e["kind"] == "intervention_start" and e["critical"]
        ]
        # every moment the network drove under the TTC threshold, a critical takeover had started
        for tel in log.telemetry:
            if tel["driver"] == "network" and tel["ttc_s"] is not None and tel["ttc_s"] < threshold:
                assert any(
                    tel["t_s"] - reaction - 2 * DT_S <= t <= tel["t_s"] + DT_S + 1e-6
                    for t in starts
                ), (f, tel)
        # and every TTC takeover had the ground truth under the threshold the step before
        by_time = {round(t["t_s"], 3): t for t in log.telemetry}
        for e in log.events:
            if e["kind"] == "intervention_start" and e["reason"] == "ttc_under_threshold":
                before = by_time[round(e["t_s"] - DT_S, 3)]
                assert before["ttc_s"] is not None and before["ttc_s"] < threshold


def test_the_expert_net_needs_no_takeover_and_the_safety_driver_saves_the_naive_one(
    tmp_path: Path,
) -> None:
    kw: dict[str, Any] = {
        "cars": 4,
        "minutes": 0.5,
        "families": ("stalled",),
        "drive_s": 30.0,
        "logging": "none",
    }
    expert = drive(DriveConfig(out=str(tmp_path), mode="autonomous", policy="expert", **kw))
    assert (
        expert.critical_interventions == expert.noncritical_interventions == expert.collisions == 0
    )
    watched = drive(DriveConfig(out=str(tmp_path), mode="autonomous", policy="naive", **kw))
    # a safety driver who never reacts in time: every critical situation becomes a crash
    unwatched = drive(
        DriveConfig(
            out=str(tmp_path),
            mode="autonomous",
            policy="naive",
            safety=SafetyConfig(reaction_s=60.0),
            **kw,
        )
    )
    assert watched.critical_interventions >= 1
    assert unwatched.collisions > watched.collisions
    assert not list(tmp_path.glob("*.mcap"))  # logging none writes nothing


def test_trigger_only_logging_uploads_windows_around_events_that_decode_on_their_own(
    tmp_path: Path,
) -> None:
    triggers = TriggerConfig(window_before_s=2.0, window_after_s=1.0, sample_normal=0.0)
    summary, _ = _run(
        tmp_path,
        cars=3,
        minutes=0.5,
        mode="autonomous",
        policy="naive",
        families=("stalled", "cut_in"),
        drive_s=30.0,
        logging="triggers",
        triggers=triggers,
    )
    assert 0 < summary.frames_logged < summary.decisions
    for f in summary.files:
        log = read_drive_log(f)
        events = [e["t_s"] for e in log.events]
        packets = video_packets(f, "front")
        times = [p.t_s for p in packets]
        for t in times:  # every uploaded frame lies in a window around an event
            assert any(e - 2.0 - 1e-6 <= t <= e + 1.0 + 1e-6 for e in events), (f, t)
        for i, p in enumerate(packets):  # and each window starts with a keyframe
            if i == 0 or p.t_s - packets[i - 1].t_s > 1.5 * DT_S:
                assert is_keyframe(p.data)
        if packets:
            assert decode_video(f, "front").shape[0] == len(packets)
        assert len(log.telemetry) > len(packets) or not events  # telemetry is always logged


def test_sampled_normal_driving_is_uploaded_without_events(tmp_path: Path) -> None:
    triggers = TriggerConfig(sample_normal=1.0, sample_slot_s=5.0)
    summary, _ = _run(
        tmp_path,
        cars=2,
        minutes=0.2,
        mode="manual",
        families=("highway",),
        drive_s=12.0,
        logging="triggers",
        triggers=triggers,
    )
    assert summary.frames_logged >= 0.9 * summary.decisions  # every slot sampled: nearly everything


def test_a_drive_is_deterministic(tmp_path: Path) -> None:
    kw: dict[str, Any] = {
        "cars": 2,
        "minutes": 0.2,
        "mode": "mixed",
        "policy": "naive",
        "families": ("cut_in",),
        "logging": "none",
    }
    a = drive(DriveConfig(out=str(tmp_path), **kw)).as_dict()
    b = drive(DriveConfig(out=str(tmp_path), **kw)).as_dict()
    for key in (
        "decisions",
        "miles",
        "critical_interventions",
        "shadow_disagreements",
        "collisions",
        "near_misses",
    ):
        assert a[key] == b[key]


def test_the_same_drive_writes_the_same_bytes_wherever_it_is_written(tmp_path: Path) -> None:
    """Drive ids are content hashes: a drive logged to another folder must hash the same, or a
    loop run twice with one seed would mine (and sample) different drives."""
    kw: dict[str, Any] = {
        "cars": 2,
        "minutes": 0.1,
        "drive_s": 6.0,
        "mode": "mixed",
        "policy": "naive",
        "families": ("cut_in",),
    }
    drive(DriveConfig(out=str(tmp_path / "a"), **kw))
    drive(DriveConfig(out=str(tmp_path / "elsewhere" / "b"), **kw))
    a, b = (
        sorted((tmp_path / "a").glob("*.mcap")),
        sorted((tmp_path / "elsewhere" / "b").glob("*.mcap")),
    )
    assert [p.name for p in a] == [p.name for p in b] and len(a) == 4  # 2 cars x 2 drives of 6 s
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize(
    ("kw", "named"),
    [
        ({"cars": 0}, "cars=0"),
        ({"cars": 2.5}, "cars=2.5"),
        ({"minutes": -1.0}, "minutes=-1.0"),
        ({"mode": "robot"}, "mode='robot'"),
        ({"logging": "some"}, "logging='some'"),
        ({"families": ("moon",)}, "'moon'"),
        ({"seed": -3}, "seed=-3"),
        ({"heldout": True, "seed": 5}, "seed=5"),
    ],
)
def test_bad_config_is_refused_naming_the_value(tmp_path: Path, kw: dict, named: str) -> None:
    with pytest.raises(DojoConfigError, match=named.replace("(", r"\(").replace(".", r"\.")):
        DriveConfig(out=str(tmp_path), **kw)


def test_bad_thresholds_are_refused_naming_the_value() -> None:
    with pytest.raises(DojoConfigError, match=r"SafetyConfig.ttc_critical_s=-1.0 must be > 0"):
        SafetyConfig(ttc_critical_s=-1.0)
    with pytest.raises(DojoConfigError, match=r"SafetyConfig.hold_s=nan must be a finite number"):
        SafetyConfig(hold_s=float("nan"))
    with pytest.raises(DojoConfigError, match=r"TriggerConfig.sample_normal=2.0 must be a share"):
        TriggerConfig(sample_normal=2.0)
    with pytest.raises(
        DojoConfigError, match=r"TriggerConfig.window_before_s='5' must be a finite number"
    ):
        TriggerConfig(window_before_s="5")  # type: ignore[arg-type]


def test_bad_policies_and_folders_get_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DojoConfigError, match="Unknown policy 'wizard'"):
        Fleet(DriveConfig(out=str(tmp_path / "a"), policy="wizard"))
    with pytest.raises(DojoConfigError, match="Checkpoint .*missing.pt does not exist"):
        Fleet(DriveConfig(out=str(tmp_path / "a"), policy=str(tmp_path / "missing.pt")))
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(DojoConfigError, match="Output folder .*file/logs cannot be created"):
        Fleet(DriveConfig(out=str(blocker / "logs"), mode="manual"))
    first, _ = _run(tmp_path / "b", cars=1, minutes=0.05, mode="manual")
    before = {f: Path(f).read_bytes() for f in first.files}
    with pytest.raises(DojoConfigError, match="already holds drive logs"):
        Fleet(DriveConfig(out=str(tmp_path / "b"), mode="manual"))
    assert {f: Path(f).read_bytes() for f in first.files} == before  # nothing stored is touched


def test_a_checkpoint_drives_the_fleet_with_one_batched_forward_pass_per_step(
    tmp_path: Path,
) -> None:
    torch = pytest.importorskip("torch")
    from dojo.nets.checkpoint import save_policy
    from dojo.nets.policy import DrivingPolicy, PolicyConfig
    from dojo.world.camera import CameraRig

    torch.manual_seed(0)
    cams = len(CameraRig.default().cameras)  # the fleet's default rig
    ckpt = save_policy(tmp_path / "net.pt", DrivingPolicy(PolicyConfig(size="tiny", cameras=cams)))
    fleet = Fleet(
        DriveConfig(
            out=str(tmp_path / "logs"),
            cars=3,
            minutes=0.1,
            mode="mixed",
            policy=str(ckpt),
            families=("highway",),
        )
    )
    batches: list[int] = []
    assert isinstance(fleet.policy, NetworkPolicy)
    fleet.policy.model.register_forward_hook(
        lambda _m, inputs, _o: batches.append(inputs[0].shape[0])
    )
    summary = fleet.run()
    assert batches == [3] * 60  # one forward for the whole fleet at every decision
    assert summary.decisions == 180 and summary.drives == 3
    assert {t["driver"] for f in summary.files for t in read_drive_log(f).telemetry} >= {
        "human",
        "network",
    }


def test_an_incompatible_or_corrupt_checkpoint_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from dojo.nets.checkpoint import save_policy
    from dojo.nets.policy import DrivingPolicy, PolicyConfig

    wide = save_policy(tmp_path / "wide.pt", DrivingPolicy(PolicyConfig(cameras=4, width=128)))
    with pytest.raises(
        DojoConfigError,
        match="wide.pt is incompatible with this fleet: it reads 4 cameras of 128x48 grey",
    ):
        Fleet(DriveConfig(out=str(tmp_path / "a"), policy=str(wide)))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(DojoConfigError, match="junk.pt"):
        Fleet(DriveConfig(out=str(tmp_path / "a"), policy=str(junk)))
    assert not (tmp_path / "a").exists()  # refused before anything was created


def test_no_policy_changes_the_world_it_reads(tmp_path: Path) -> None:
    """The baselines and a network only propose: every array of the world stays as it was."""
    torch = pytest.importorskip("torch")
    from dojo.fleet.policy import make_policy
    from dojo.nets.checkpoint import save_policy
    from dojo.nets.policy import DrivingPolicy, PolicyConfig
    from dojo.world.camera import CameraRig
    from dojo.world.scenarios import FAMILIES
    from dojo.world.world import Command, EgoAction, World
    from tests.world.test_actions import assert_unchanged, snapshot

    torch.manual_seed(0)
    cfg = DriveConfig(out=str(tmp_path))
    rig = CameraRig.named(cfg.rig, rgb=cfg.rgb, width=cfg.camera_width, height=cfg.camera_height)
    net = DrivingPolicy(PolicyConfig(size="tiny", cameras=len(rig.cameras)))
    ckpt = save_policy(tmp_path / "net.pt", net)
    specs = ("naive", "expert", "careful", str(ckpt))
    policies = [make_policy(spec, rig, device="cpu") for spec in specs]
    rng = np.random.default_rng(0)
    for family in FAMILIES:
        world = World(family, seeds=range(3))
        world.command[:] = [Command.KEEP_LANE, Command.CHANGE_LEFT, Command.TAKE_EXIT]
        for _ in range(20):  # to a lane-decision step
            world.step(world.expert_action())
        before = snapshot(world)
        for policy in policies:
            shape = (3, len(rig.cameras), max(policy.frames, 1), *rig.image_shape[1:])
            images = rng.integers(0, 256, shape, dtype=np.uint8) if policy.frames else None
            assert isinstance(policy.act(world, images), EgoAction)
            assert_unchanged(world, before, f"{policy.name} on {family}")


@pytest.mark.parametrize("cars", [2, 4, 12, 24, 25])
def test_in_mixed_mode_every_family_gets_human_and_network_driving(cars: int) -> None:
    from dojo.fleet.drive import AUTONOMOUS, SHADOW, car_modes
    from dojo.loop.config import stage
    from dojo.world.scenarios import FAMILIES

    cfg = replace(stage("drive"), cars=cars, mode="mixed")
    modes = car_modes(cfg)
    drives = max(1, 2 * len(FAMILIES) // cars + 1)  # enough drives for each pair to meet all
    seen = {
        (cfg.drive_family(car, d), int(modes[car])) for car in range(cars) for d in range(drives)
    }
    want = {(fam, m) for fam in FAMILIES for m in (SHADOW, AUTONOMOUS)}
    assert want <= seen, sorted(want - seen)
    if cars >= 2 * len(FAMILIES):  # a fleet of the loop's size covers them all in every drive
        for d in range(3):
            first = {(cfg.drive_family(c, d), int(modes[c])) for c in range(cars)}
            assert want <= first, (d, sorted(want - first))
