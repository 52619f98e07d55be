"""`dojo bench drive`: structure and internal consistency on a tiny fleet (no speed targets)."""

from __future__ import annotations

import json
import math
import re
import tempfile
from pathlib import Path

import pytest

from dojo.bench.drive import TARGET_RATIO, _logged_drive, bench_drive, encode_alone, format_table
from dojo.drivelog import video_packets
from dojo.errors import DojoConfigError
from dojo.fleet.config import DriveConfig
from dojo.world.world import DT_S

CARS, SECONDS = 2, 2.0


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("benchtmp")
    saved = tempfile.tempdir
    tempfile.tempdir = str(tmp)  # the benchmark's temporary folder lands here, to be checked
    messages: list[str] = []
    try:
        out = bench_drive(cars=CARS, seconds=SECONDS, log=messages.append)
    finally:
        tempfile.tempdir = saved
    out["_tmp"] = tmp
    out["_messages"] = messages
    return out


def test_counts_are_consistent(result: dict) -> None:
    steps = round(SECONDS / DT_S)
    cams = len(result["cameras"])
    assert result["cars"] == CARS and result["steps"] == steps
    assert result["sim_seconds_per_car"] == pytest.approx(SECONDS)
    assert result["camera_frames_logged"] == steps * CARS
    assert result["camera_images_logged"] == steps * CARS * cams
    assert result["images_encoded_alone"] == result["camera_images_logged"]
    assert result["ratio_logging_to_encode"] == pytest.approx(
        result["logging_s"] / result["encode_alone_s"]
    )
    assert result["target_ratio"] == TARGET_RATIO
    assert result["ratio_video_logging_to_encode"] == pytest.approx(
        result["video_logging_s"] / result["encode_alone_s"]
    )
    assert 0 < result["video_logging_s"] < result["logging_s"]
    assert result["meets_target"] == (result["ratio_video_logging_to_encode"] <= TARGET_RATIO)
    wall = result["wall_s_logged"]
    assert result["fleet_sim_seconds_per_wall_s"] == pytest.approx(CARS * SECONDS / wall)
    assert result["camera_images_per_s_logged"] == pytest.approx(
        result["camera_images_logged"] / wall
    )
    assert result["bytes_per_image"] == pytest.approx(
        result["bytes_written"] / result["camera_images_logged"]
    )
    assert result["sensors_s"] + result["logging_s"] <= wall


def test_rates_and_times_are_positive(result: dict) -> None:
    for key in (
        "fleet_sim_seconds_per_wall_s",
        "fleet_sim_seconds_per_wall_s_no_logging",
        "camera_images_per_s_logged",
        "images_per_s_encode_alone",
        "images_per_s_logging",
        "logging_s",
        "encode_alone_s",
        "sensors_s",
        "wall_s_no_logging",
        "bytes_written",
        "h264_bytes_encode_alone",
    ):
        assert math.isfinite(result[key]) and result[key] > 0, key
    assert result["files_written"] >= CARS


def test_machine_and_json(result: dict) -> None:
    m = result["machine"]
    assert m["cpu"] and m["cores"] >= 1 and m["python"] and m["av"]
    assert "x264" in m["libx264"]
    plain = {k: v for k, v in result.items() if not k.startswith("_")}
    assert json.loads(json.dumps(plain)) == plain


def test_temporary_folder_removed(result: dict) -> None:
    assert list(Path(result["_tmp"]).iterdir()) == []
    assert len(result["_messages"]) >= 3


def test_table_states_the_ratio(result: dict) -> None:
    table = format_table(result)
    verdict = "met" if result["meets_target"] else "NOT met"
    line = f"camera-frame logging / encode alone: {result['ratio_video_logging_to_encode']:.2f}x (target <= 1.5x): {verdict}"
    assert line in table
    assert f"/ encode alone: {result['ratio_logging_to_encode']:.2f}x" in table
    assert "no logging" in table and "PyAV encode alone" in table


def test_encode_alone_reproduces_the_logged_video(tmp_path: Path) -> None:
    """Same frames, same settings: the encode-alone bytes are the logged H.264 bytes exactly.

    Drives of 0.5 s make each car start new drives (new logs, new encoders) mid-run.
    """
    config = DriveConfig(
        cars=2, minutes=1.5 / 60, mode="manual", out=str(tmp_path / "drives"), drive_s=0.5
    )
    summary, images, drives, fleet = _logged_drive(config)
    assert sorted(set(drives.ravel().tolist())) == [0, 1, 2]  # (a 4th, empty log opens at the end)
    assert images.shape == (15, 2, *fleet.rig.image_shape)
    logged = sum(
        len(p.data) for f in summary.files for cam in fleet.rig.names for p in video_packets(f, cam)
    )
    _, count, size = encode_alone(images, drives, 1.0 / DT_S, 10, fleet.rig.rgb)
    assert count == 15 * 2 * len(fleet.rig.names)
    assert size == logged


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"cars": 0}, "cars=0"),
        ({"cars": -3}, "cars=-3"),
        ({"cars": 2.5}, "cars=2.5"),
        ({"cars": True}, "cars=True"),
        ({"seconds": 0}, "seconds=0"),
        ({"seconds": -1.0}, "seconds=-1.0"),
        ({"seconds": float("nan")}, "seconds=nan"),
        ({"seconds": "5"}, "seconds='5'"),
        ({"mode": "flying"}, "mode='flying'"),
    ],
)
def test_bad_arguments_raise(kwargs: dict, named: str) -> None:
    with pytest.raises(DojoConfigError, match=re.escape(named)):
        bench_drive(**kwargs)
