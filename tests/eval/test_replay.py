"""Replaying logged moments: exact re-simulation, starts from a scene, `dojo replay`, bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dojo.cli import main
from dojo.drivelog.reader import read_drive_log, read_scene
from dojo.drivelog.writer import DriveLogWriter
from dojo.errors import ConfigError
from dojo.eval.replay import replay
from dojo.eval.resim import from_scene, load_drive, resimulate, resimulate_batch
from dojo.fleet.config import DriveConfig
from dojo.fleet.drive import drive
from dojo.world.scene import scene_objects
from dojo.world.world import DT_S, World

KEYS = ("decisions", "critical_interventions", "collisions", "max_deviation_m")


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A mixed fleet (shadow and autonomous cars, naive network) meeting stalled cars and
    cut-ins: human, network and safety-driver steps, critical interventions, collisions."""
    out = tmp_path_factory.mktemp("fleet")
    config = DriveConfig(
        cars=4,
        minutes=0.75,
        mode="mixed",
        policy="naive",
        families=("stalled", "cut_in"),
        drive_s=45.0,
        logging="full",
        out=str(out),
    )
    summary = drive(config)
    assert summary.critical_interventions > 0  # the moments the tests replay
    return [Path(f) for f in sorted(summary.files) if read_drive_log(f).telemetry]


def _critical_moment(logs: list[Path]) -> tuple[Path, float]:
    for path in logs:
        for e in read_drive_log(path).events:
            if e["kind"] == "intervention_start" and e["critical"] and e["t_s"] >= 6.0:
                return path, float(e["t_s"])
    raise AssertionError("the fleet met no critical intervention after 6 s")


def _run(*argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_resimulation_equals_every_logged_step_bit_for_bit(logs: list[Path]) -> None:
    drivers: set[str] = set()
    for path in logs:
        d = load_drive(path)
        drivers |= set(d.driver.tolist())
        rep = resimulate(d)
        speeds = []
        while rep.step < len(d.t_s):
            rep.follow()
            speeds.append(float(rep.world.vehicles.v[0, 0]))
            assert int(rep.world.command[0]) == d.command[rep.step - 1]
        # scene positions (logged exactly) and the telemetry's speed, at every step
        assert rep.max_deviation_m == 0.0 and rep.unpaired == 0, path.name
        assert speeds == [r["speed_mps"] for r in read_drive_log(path).telemetry], path.name
    assert drivers >= {"human", "network", "safety_driver"}  # every kind of step was replayed


def test_a_logged_replay_writes_the_logged_drive_again(
    logs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = logs[0]
    out = tmp_path / "replayed.mcap"
    code, text, _ = _run(
        "replay", str(path), "--from", "4", "--seconds", "8", "--policy", "logged",
        "--out", str(out), "--json", capsys=capsys,
    )  # fmt: skip
    assert code == 0
    result = json.loads(text)
    assert result["decisions"] == 80 and result["start"] == "resim"
    assert result["max_deviation_m"] == 0.0 and result["out"] == str(out)
    logged, again = read_drive_log(path), read_drive_log(out)
    window = [r for r in logged.telemetry if 4.0 + 1e-9 < r["t_s"] <= 12.0 + 1e-9]
    assert again.telemetry == window  # the same drive times, every field equal
    assert again.config["replay_of"] == path.name and again.cameras == logged.cameras
    scene = read_scene(out)
    assert scene.times_s[0] == pytest.approx(4.0) and len(scene) == 81


def test_a_policy_replays_a_critical_moment_and_the_expert_avoids_it(logs: list[Path]) -> None:
    path, t = _critical_moment(logs)
    naive = replay(path, t - 5.0, seconds=8.0, policy="naive")
    expert = replay(path, t - 5.0, seconds=8.0, policy="expert")
    for r in (naive, expert):
        assert r.max_deviation_m == 0.0 and r.start == "resim"  # the start is the logged state
    # the naive network drove this moment into a takeover; replayed, it does so again
    assert naive.critical_interventions >= 1
    assert expert.critical_interventions == 0 and expert.collisions == 0
    assert expert.decisions == 80 and naive.decisions <= 80  # a collision ends a drive


def test_replay_json_has_the_documented_keys(
    logs: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, text, _ = _run("replay", str(logs[1]), "--from", "2", "--seconds", "3", "--json",
                         capsys=capsys)  # fmt: skip
    assert code == 0
    result: dict[str, Any] = json.loads(text)
    assert set(KEYS) <= set(result) and result["policy"] == "naive"
    code, text, _ = _run("replay", str(logs[1]), "--from", "2", "--seconds", "3", capsys=capsys)
    assert code == 0 and "critical interventions" in text and "{" not in text


def _tenant_log(path: Path, scene: bool = True, metadata: dict[str, Any] | None = None) -> None:
    """A log Dojo's fleet did not write: telemetry and poses of a driven world, its scene if
    ``scene``, no action fields, and only the ``metadata`` given (no scenario by default)."""
    world = World(["cut_in"], [7])
    with DriveLogWriter(path, ["front"], 32, 16, metadata=metadata or {"car_id": "tenant-1"}) as w:
        for k in range(120):
            t = k * DT_S
            w.write_frame(t, np.zeros((1, 16, 32), np.uint8))
            if scene:
                w.write_scene(t, scene_objects(world, 0))
            world.step(world.expert_action())
            v = world.vehicles
            w.write_pose(t + DT_S, 0.0, 0.0, 0.0, 0.0)
            w.write_telemetry(
                t + DT_S,
                {"speed_mps": float(v.v[0, 0]), "accel_mps2": float(v.accel[0, 0]),
                 "steer_rad": float(v.steer[0, 0]), "lane": 1, "ttc_s": None, "command": 0},
            )  # fmt: skip


def test_a_log_of_an_unknown_scenario_starts_from_its_scene(tmp_path: Path) -> None:
    path = tmp_path / "tenant.mcap"
    _tenant_log(path)
    d = load_drive(path)
    assert d.family is None and d.why_not_resimulable() is not None
    rep = from_scene(d, 5.0)
    placed = rep.world.vehicles
    logged = rep.logged_scene()
    assert logged is not None and placed.active[0].sum() == len(logged)
    assert rep.deviation_m() == (0.0, 0)  # placed exactly where the scene says
    result = replay(path, 5.0, seconds=4.0, policy="logged")
    assert result.start == "scene" and result.decisions == 40
    assert 0.0 < result.max_deviation_m < 100.0  # the traffic drifts, and it is measured


def test_a_moment_outside_the_log_is_refused_naming_file_and_moment(
    logs: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run("replay", str(logs[0]), "--from", "999", capsys=capsys)
    assert code == 2 and out == ""
    assert f"Moment t=999.0 s is outside drive log {logs[0].name}" in err
    code, _, err = _run("replay", str(logs[0]), "--from", "nan", capsys=capsys)
    assert code == 2 and "outside drive log" in err


def test_a_log_without_scene_or_scenario_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bare.mcap"
    _tenant_log(path, scene=False)
    code, _, err = _run("replay", str(path), "--from", "3", capsys=capsys)
    assert code == 2
    assert "can neither be re-simulated (it records no scenario" in err and "/scene" in err


def test_a_log_of_another_world_version_says_which_version_it_needs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "old.mcap"
    _tenant_log(path, metadata={"family": "cut_in", "seed": 7, "world_version": 999})
    code, _, err = _run("replay", str(path), "--from", "3", "--start", "resim", capsys=capsys)
    assert code == 2
    assert "written by world version 999 and re-simulation needs world version 1" in err
    assert replay(path, 3.0, seconds=1.0).start == "scene"  # auto falls back to the scene


def test_a_replay_log_is_not_re_simulated_as_a_drive(logs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "r.mcap"
    replay(logs[0], 3.0, seconds=2.0, policy="expert", out=out)
    with pytest.raises(ConfigError, match=f"it is a replay of {logs[0].name}"):
        replay(out, 4.0, start="resim")
    assert replay(out, 4.0, seconds=1.0, policy="logged").start == "scene"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--policy", "wizard"], "Unknown policy 'wizard'"),
        (["--seconds", "-1"], "seconds=-1.0 must be a positive number"),
        (["--policy", "missing.pt"], "Checkpoint missing.pt does not exist"),
    ],
)
def test_bad_arguments_get_one_clear_error(
    logs: list[Path], argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run("replay", str(logs[0]), "--from", "2", *argv, capsys=capsys)
    assert code == 2 and out == "" and message in err
    assert err.count("dojo: error:") == 1


def test_an_existing_output_is_never_overwritten(logs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "keep.mcap"
    out.write_bytes(b"precious")
    with pytest.raises(ConfigError, match="already exists"):
        replay(logs[0], 2.0, out=out)
    assert out.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.mcap"]  # no temporary left


def test_a_truncated_log_is_a_clear_error(
    logs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(logs[0].read_bytes()[:5000])
    code, _, err = _run("replay", str(cut), "--from", "1", capsys=capsys)
    assert code == 2 and "truncated" in err and "cut.mcap" in err


def test_a_batch_re_simulates_each_drive_to_its_own_moment_exactly(logs: list[Path]) -> None:
    drives = [load_drive(p) for p in logs[:4]]
    moments = [0.0, drives[1].duration_s / 2, drives[2].duration_s, 0.3]
    batch = resimulate_batch(drives, moments)
    assert batch.deviation_m.tolist() == [0.0] * 4 and batch.unpaired.tolist() == [0] * 4
    assert batch.world.time_s.tolist() == pytest.approx(moments)
    for w, (d, t) in enumerate(zip(drives, moments, strict=True)):
        alone = resimulate(d, t).world.vehicles
        assert (batch.world.vehicles.s[w] == alone.s[0]).all()
        assert (batch.world.vehicles.v[w] == alone.v[0]).all()
