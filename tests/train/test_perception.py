"""dojo train on auto-labels: --net perception and --net both with the planner heads, end to end
(the tiny fleet dataset, auto-labelled by the real stage)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dojo.data.autolabel import autolabel
from dojo.errors import DojoConfigError
from dojo.nets.targets import PLANNER_TARGETS
from dojo.train import prepare, train
from dojo.train.config import TrainConfig
from tests.train.support import FleetData, tiny_config

PLANNER_KEYS = (
    "val_planner_loss",
    "val_planner_lead_gap_rel_error_median",
    "val_planner_closing_speed_error_mps_median",
    "val_planner_inv_ttc_error_per_s_median",
    "val_planner_adjacent_gap_rel_error_median",
    "val_planner_left_ahead_gap_rel_error_median",
)


@pytest.fixture(scope="module")
def labelled(fleet_data: FleetData, tmp_path_factory: pytest.TempPathFactory) -> FleetData:
    """The fleet dataset's store, auto-labelled (every object taken as visible: the rule is not
    what this tests)."""
    store = tmp_path_factory.mktemp("perception") / "store"
    shutil.copytree(fleet_data.store, store)
    summary = autolabel(str(store), lambda scene, row: np.ones(scene.present.shape, dtype=bool))
    assert summary.drives_labelled == summary.drives and not summary.drives_refused
    return FleetData(store=store, dataset=fleet_data.dataset, empty=fleet_data.empty)


def test_dojo_train_perception_on_autolabels_reports_the_planner_errors_and_band_ious(
    labelled: FleetData, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dojo.cli import main

    out = tmp_path / "cli"
    argv = ["train", "--dataset", labelled.dataset, "--store", str(labelled.store)]
    argv += ["--out", str(out), "--net", "perception", "--labels", "autolabel", "--steps", "3"]
    argv += ["--batch-size", "8", "--val-batches", "2", "--no-progress", "--json"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["net"] == "perception" and summary["labels"] == "autolabel"
    assert summary["finished"] and math.isfinite(summary["loss"])
    for key in PLANNER_KEYS:
        assert key in summary, key
    assert 0.0 <= summary["val_planner_lead_gap_rel_error_median"] < 10.0
    assert summary["val_planner_lead_gap_windows"] > 0
    for band in ("0_20", "20_40", "40_80"):
        v = summary[f"val_iou_vehicle_{band}"]
        assert math.isnan(v) or 0.0 <= v <= 1.0
    # the 80 m grid is banded: its 40-80 m band has cells (the 40 m logged grid's barely has)
    assert summary["val_prior_iou_not_drivable"] > 0.5
    run = json.loads((out / "run.json").read_text())
    net = run["net_config"]
    assert (net["rows"], net["cols"], net["planner"]) == (200, 80, len(PLANNER_TARGETS))
    assert "policy" not in summary  # no driving head: no policy.pt


def test_both_on_autolabels_trains_the_three_heads_and_keeps_a_policy(
    labelled: FleetData, tmp_path: Path
) -> None:
    summary = train(
        tiny_config(labelled, tmp_path / "both", net="both", labels="autolabel", steps=2)
    )
    assert summary["finished"] and "policy" in summary
    assert "val_planner_loss" in summary and math.isfinite(summary["val_planner_loss"])
    # the telemetry path of the same store is the run it always was: no planner heads
    plain = prepare(tiny_config(labelled, tmp_path / "plain", net="both"))
    assert plain.net_config["planner"] == 0 and plain.net_config["rows"] == 120


def test_perception_needs_autolabels(labelled: FleetData, fleet_data: FleetData) -> None:
    with pytest.raises(DojoConfigError, match="labels='autolabel'"):
        TrainConfig(dataset="d", store="s", out="o", net="perception")
    with pytest.raises(DojoConfigError, match="labels='camera' is not known"):
        TrainConfig(dataset="d", store="s", out="o", labels="camera")
    with pytest.raises(DojoConfigError, match="planner_weight"):
        TrainConfig(dataset="d", store="s", out="o", planner_weight=-1.0)
    # a store never auto-labelled: one sentence saying what to run
    with pytest.raises(DojoConfigError, match="dojo autolabel"):
        prepare(tiny_config(fleet_data, Path("unused"), net="perception", labels="autolabel"))


@pytest.fixture(scope="module")
def perception_run(
    labelled: FleetData, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, torch.Tensor]]:
    """A two-step perception run's checkpoint and the weights in it."""
    from dojo.nets import load_net
    from dojo.train.config import CHECKPOINT_FILE

    out = tmp_path_factory.mktemp("perception-run")
    first = train(tiny_config(labelled, out, net="perception", labels="autolabel", steps=2))
    ckpt = Path(first["run"]) / CHECKPOINT_FILE
    return ckpt, load_net(ckpt, "perception").state_dict()


def test_perception_fine_tunes_from_a_run_checkpoint_and_refuses_a_policy_file(
    labelled: FleetData, tmp_path: Path, perception_run: tuple[Path, dict[str, torch.Tensor]]
) -> None:
    from dojo.train.trainer import Trainer

    ckpt, start = perception_run
    tune = tiny_config(
        labelled, tmp_path / "tune", net="perception", labels="autolabel", init_from=str(ckpt)
    )
    trainer = Trainer(prepare(tune))
    for name, w in start.items():  # the occupancy decoder and the planner heads carry over too
        assert torch.equal(trainer.model.state_dict()[name], w), name
    # the weights of another kind of net: named, before any work
    policy = train(tiny_config(labelled, tmp_path / "policy", steps=2))["policy"]
    with pytest.raises(DojoConfigError, match="holds a 'policy' checkpoint, not a 'perception'"):
        prepare(
            tiny_config(
                labelled, tmp_path / "bad", net="perception", labels="autolabel", init_from=policy
            )
        )


def test_perception_without_its_occupancy_loss_trains_the_planner_heads_alone(
    labelled: FleetData, tmp_path: Path, perception_run: tuple[Path, dict[str, torch.Tensor]]
) -> None:
    from dojo.nets import load_net
    from dojo.train.config import CHECKPOINT_FILE

    ckpt, start = perception_run
    summary = train(
        tiny_config(
            labelled,
            tmp_path / "planner",
            net="perception",
            labels="autolabel",
            occupancy_weight=0.0,
            init_from=str(ckpt),
            steps=3,
            lr=1e-2,
        )
    )
    assert summary["finished"] and math.isfinite(summary["val_planner_loss"])
    # no occupancy computed: its metrics are NaN, and the run's loss is the planner's alone
    assert math.isnan(summary["val_iou"]) and summary["val_loss"] == summary["val_planner_loss"]
    after = load_net(Path(summary["run"]) / CHECKPOINT_FILE, "perception").state_dict()
    decoder = [n for n in start if n.startswith(("occupancy.decoder.", "occupancy.classify."))]
    planner = [n for n in start if n.startswith("planner.")]
    assert decoder and planner
    for name in decoder:  # the decoder took no step (AdamW's decay too needs a gradient)
        assert torch.equal(after[name], start[name]), name
    assert any(not torch.equal(after[n], start[n]) for n in planner)  # the planner heads did
    with pytest.raises(DojoConfigError, match="occupancy_weight"):
        TrainConfig(dataset="d", store="s", out="o", occupancy_weight=-0.5)
