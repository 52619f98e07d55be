"""The trainer with the occupancy head: --net occupancy and --net both on the real tiny dataset."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from dojo.errors import DojoConfigError
from dojo.nets import OccupancyConfig, load_policy, parameter_count
from dojo.train import prepare, train
from dojo.train.config import TrainConfig
from tests.train.support import FleetData, tiny_config


def rows(run: Path, key: str) -> list[dict[str, Any]]:
    return [
        r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if key in r
    ]


def checkpoint(run: Path) -> dict[str, Any]:
    return torch.load(run / "checkpoint.pt", weights_only=True)


def test_both_trains_reports_iou_and_resumes_bit_for_bit(
    fleet_data: FleetData, tmp_path: Path
) -> None:
    """6 steps straight vs stopped after step 3 (checkpointed) and resumed: the same losses,
    validations (IoU included) and weights, exactly."""
    common: dict[str, Any] = dict(
        net="both", steps=6, val_every=3, checkpoint_every=3, occupancy_weight=0.5
    )
    straight = tmp_path / "straight"
    summary = train(tiny_config(fleet_data, straight, **common))
    assert summary["finished"] and summary["net"] == "both"
    vals = rows(straight, "val_loss")
    assert [v["step"] for v in vals] == [3, 6]
    for v in vals:
        assert 0.0 <= v["val_iou"] <= 1.0 and math.isfinite(v["val_occupancy_loss"])
        per_class = [v[f"val_iou_{name}"] for name in ("vehicle", "obstacle", "not_drivable")]
        present = [x for x in per_class if x is not None and math.isfinite(x)]
        assert present and v["val_iou"] == pytest.approx(
            sum(present) / len(present)
        )  # the mean of the classes present
    assert summary["val_iou"] == vals[-1]["val_iou"]
    run = json.loads((straight / "run.json").read_text())
    net = OccupancyConfig.from_dict(run["net_config"])
    assert (net.rows, net.cols, net.classes) == (120, 80, 5)  # the grid the fleet logged

    ckpt = checkpoint(straight)
    assert ckpt["kind"] == "both"
    with pytest.raises(DojoConfigError, match="holds a 'both' checkpoint, not a 'policy' one"):
        load_policy(straight / "checkpoint.pt")
    policy = load_policy(straight / "policy.pt")  # the policy half, on its own, for the fleet
    assert all(torch.equal(v, ckpt["model"][f"policy.{k}"]) for k, v in policy.state_dict().items())
    assert summary["parameters"] > parameter_count(policy)

    broken = tmp_path / "broken"
    first = train(tiny_config(fleet_data, broken, **common), stop_after=3)
    assert not first["finished"] and checkpoint(broken)["train"]["step"] == 3
    second = train(tiny_config(fleet_data, broken, **common, resume=True))
    assert second["finished"] and second["steps_this_run"] == 3
    for key in ("loss", "grad_norm", "lr"):
        assert [r[key] for r in rows(straight, "loss")] == [r[key] for r in rows(broken, "loss")], (
            key
        )
    assert rows(straight, "val_loss") == rows(broken, "val_loss")
    wa, wb = checkpoint(straight)["model"], checkpoint(broken)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_occupancy_alone_trains_and_a_resume_as_another_net_is_refused(
    fleet_data: FleetData, tmp_path: Path
) -> None:
    out = tmp_path / "occ"
    summary = train(tiny_config(fleet_data, out, net="occupancy", steps=3, val_every=3))
    assert summary["finished"] and 0.0 <= summary["val_iou"] <= 1.0
    assert math.isfinite(summary["loss"]) and summary["loss"] < math.log(5) + 0.5  # CE of 5 classes
    assert "policy" not in summary and not (out / "policy.pt").exists()  # no policy head to export
    assert checkpoint(out)["kind"] == "occupancy"
    for net in ("policy", "both"):
        with pytest.raises(
            DojoConfigError,
            match=f"is of a 'occupancy' net of size 'tiny'; this run asks for a '{net}' net",
        ):
            prepare(tiny_config(fleet_data, out, net=net, steps=3, resume=True))
    # and a policy run cannot be continued as an occupancy one
    pol = tmp_path / "pol"
    train(tiny_config(fleet_data, pol, steps=2))
    with pytest.raises(
        DojoConfigError, match="is of a 'policy' net of size 'tiny'; this run asks for a 'both' net"
    ):
        prepare(tiny_config(fleet_data, pol, net="both", steps=2, resume=True))


def test_occupancy_weight_is_checked_and_part_of_the_run(
    fleet_data: FleetData, tmp_path: Path
) -> None:
    with pytest.raises(DojoConfigError, match="occupancy_weight=-0.5 must be >= 0"):
        TrainConfig(dataset="d", store="s", out="o", occupancy_weight=-0.5)
    out = tmp_path / "w"
    train(tiny_config(fleet_data, out, net="both", steps=2))
    with pytest.raises(DojoConfigError, match="holds another run"):
        prepare(
            tiny_config(fleet_data, out, net="both", steps=2, occupancy_weight=2.0, resume=True)
        )


def test_dojo_train_occupancy_reports_iou_per_band_beside_the_prior(
    fleet_data: FleetData, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dojo.cli import main

    out = tmp_path / "cli"
    argv = ["train", "--dataset", fleet_data.dataset, "--store", str(fleet_data.store)]
    argv += ["--out", str(out), "--net", "occupancy", "--steps", "2", "--batch-size", "8"]
    argv += ["--val-batches", "2", "--no-progress", "--json", "--occupancy-loss", "focal"]
    assert main([*argv, "--occupancy-head", "spatial"]) == 0
    summary = json.loads(capsys.readouterr().out)
    val = rows(out, "val_loss")[-1]
    bands = ("0_20", "20_40", "40_80", "0_40")
    names = [f"vehicle_{b}" for b in bands] + ["vehicle", "obstacle", "not_drivable"]
    for name in names:
        for key in (f"val_iou_{name}", f"val_prior_iou_{name}"):
            assert key in val and key in summary
            assert math.isnan(val[key]) or 0.0 <= val[key] <= 1.0
            assert summary[key] == val[key] or (math.isnan(summary[key]) and math.isnan(val[key]))
    # the road's edges fill whole columns of every grid: the mode map finds them
    assert val["val_prior_iou_not_drivable"] > 0.5
    run = json.loads((out / "run.json").read_text())
    assert (run["occupancy_loss"], run["net_config"]["head"]) == ("focal", "spatial")
    # a run of another loss or head is another run
    for flag, value in (("--occupancy-loss", "weighted"), ("--occupancy-head", "pooled")):
        with pytest.raises(DojoConfigError, match="holds another run"):
            prepare(
                tiny_config(
                    fleet_data,
                    out,
                    net="occupancy",
                    steps=2,
                    resume=True,
                    **{flag[2:].replace("-", "_"): value},
                )
            )


def test_the_occupancy_options_are_checked(tmp_path: Path) -> None:
    base: dict[str, Any] = dict(dataset="d", store="s", out="o")
    with pytest.raises(DojoConfigError, match="occupancy_loss='dice' is not known; choose one of"):
        TrainConfig(**base, occupancy_loss="dice")
    with pytest.raises(DojoConfigError, match="occupancy_head='grid' is not known; choose one of"):
        TrainConfig(**base, occupancy_head="grid")
    with pytest.raises(DojoConfigError, match="rare_class_weight=0.0 must be > 0"):
        TrainConfig(**base, rare_class_weight=0.0)
    with pytest.raises(DojoConfigError, match="focal_gamma=-1.0 must be >= 0"):
        TrainConfig(**base, focal_gamma=-1.0)
