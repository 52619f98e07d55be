"""`dojo bench perception` at toy size: the result's shape, never its figures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from dojo.bench.perception import TARGETS, format_perception

KEYS = (
    "iou_vehicle_0_20",
    "iou_vehicle_20_40",
    "iou_vehicle_40_80",
    "iou_obstacle",
    "iou_not_drivable",
    "prior_iou_vehicle_0_40",
    "lead_gap_rel_error_median",
    "closing_speed_error_mps_median",
    "train_minutes",
)


def test_bench_perception_at_toy_size_gives_every_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dojo.cli import main

    argv = ["bench", "perception", "--minutes", "0.05", "--cars", "2", "--drive-minutes", "0.2"]
    assert main([*argv, "--heldout-cars", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in KEYS:
        assert key in result, key
        assert isinstance(result[key], float)
    for key in KEYS[:6]:
        assert math.isnan(result[key]) or 0.0 <= result[key] <= 1.0
    assert result["train_steps"] >= 1 and result["heldout_windows"] > 0
    assert result["drives_train"] >= 2 and result["drives_heldout"] >= 1
    assert result["autolabel_refused"] == 0 and result["autolabel_frames"] > 0
    assert {"cpu", "cores"} <= set(result["machine"])
    assert set(result["targets"]) == {k for k, _, _ in TARGETS}
    assert all(isinstance(t["met"], bool) for t in result["targets"].values())
    table = format_perception(result)
    assert "iou_vehicle_40_80" in table and "held-out" in table


def test_bench_perception_refuses_bad_sizes() -> None:
    from dojo.bench.perception import bench_perception
    from dojo.errors import DojoConfigError

    with pytest.raises(DojoConfigError, match="minutes"):
        bench_perception(0.0)
    with pytest.raises(DojoConfigError, match="cars"):
        bench_perception(1.0, cars=0)
