"""LoopConfig: every bad value is refused with a sentence naming it, before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from dojo.errors import DojoConfigError
from dojo.loop import LoopConfig, run_loop


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("loops", 0, "loops=0"),
        ("loops", 1.5, "loops=1.5"),
        ("cars", 1, "cars=1"),
        ("cars", True, "cars=True"),
        ("drive_minutes", -1.0, "drive_minutes=-1.0"),
        ("drive_minutes", float("nan"), "drive_minutes=nan"),
        ("budget_minutes", 0, "budget_minutes=0"),
        ("net", "occupancy", "cannot drive"),
        ("net", "resnet", "net='resnet'"),
        ("size", "huge", "size='huge'"),
        ("sample_normal", 1.5, "sample_normal=1.5"),
        ("hazard_window_s", (2.0, -3.0), "hazard_window_s"),
        ("alpha", 0.9, "alpha=0.9"),
        ("out", " ", "out=' '"),
        ("warm_start", "yes", "warm_start='yes'"),
        ("start_policy", "/nowhere/policy.pt", "start_policy='/nowhere/policy.pt'"),
        ("start_policy", "expert", "start_policy='expert'"),
    ],
)
def test_bad_values_are_refused_by_name(field: str, value: object, words: str) -> None:
    with pytest.raises(DojoConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        LoopConfig.from_dict({field: value})


def test_an_output_folder_that_holds_files_is_refused_before_any_car_moves(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(DojoConfigError, match="already holds files"):
        run_loop(LoopConfig(out=str(tmp_path)), progress=False)
    assert (tmp_path / "precious.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious.txt"]


def test_an_unknown_suite_is_refused_before_any_car_moves(tmp_path: Path) -> None:
    out = tmp_path / "loop"
    with pytest.raises(DojoConfigError, match="nosuch"):
        run_loop(LoopConfig.from_dict({"out": str(out), "suite": "nosuch"}), progress=False)
    assert not out.exists()


def test_the_loops_stage_defaults_are_the_stages_own_except_the_named_overrides() -> None:
    from dataclasses import MISSING, fields

    from dojo.eval.config import EvalConfig
    from dojo.fleet.config import DriveConfig
    from dojo.loop.config import LOOP_OVERRIDES, PER_TURN
    from dojo.train.config import TrainConfig

    loop = LoopConfig()
    for name, cls in (("drive", DriveConfig), ("train", TrainConfig), ("eval", EvalConfig)):
        for f in fields(cls):
            value = getattr(getattr(loop, name), f.name)
            override = LOOP_OVERRIDES.get(f"{name}.{f.name}")
            if override is not None:
                assert value == override.value, f.name
                assert value != f.default, f"{name}.{f.name} overrides nothing"
                assert override.why.strip()
            elif f.default is not MISSING and f.default is not None:
                assert value == f.default, f"{name}.{f.name}"
            elif f.default is MISSING and f.default_factory is MISSING:
                assert value == PER_TURN  # dataset, store, out: a turn's own
    assert {k for k in LOOP_OVERRIDES} >= {"train.lr", "train.steps", "train.buffer_windows"}
    assert loop.train.lr == 5e-4 and TrainConfig.__dataclass_fields__["lr"].default == 1e-3


def _flat_config(out: Path) -> dict[str, object]:
    """config.json as loops written before the configs were nested hold it."""
    return {
        "out": str(out),
        "loops": 2,
        "cars": 4,
        "drive_minutes": 0.3,
        "budget_minutes": 20.0,
        "seed": 0,
        "net": "policy",
        "size": "tiny",
        "train_steps": 20,
        "batch_size": 16,
        "lr": 0.0005,
        "shuffle_windows": 8192,
        "warm_start": True,
        "start_policy": "naive",
        "frames": 2,
        "eval_decisions": 1200,
        "eval_cars": 4,
        "suite": "heldout",
        "suites_file": None,
        "sample_normal": 1.0,
        "hazard_window_s": [-3.0, 2.0],
        "takeover_window_s": [0.0, 3.0],
        "val_share": 0.2,
        "alpha": 0.05,
    }


def test_a_loop_folder_with_a_flat_config_json_resumes_with_the_same_settings(
    tmp_path: Path,
) -> None:
    import json

    from dojo.loop.flywheel import load_config

    (tmp_path / "config.json").write_text(json.dumps(_flat_config(tmp_path)))
    config = load_config(tmp_path)
    assert (config.drive.cars, config.drive.minutes) == (4, 0.3)
    assert (config.train.steps, config.train.batch_size, config.train.lr) == (20, 16, 5e-4)
    assert config.train.buffer_windows == 8192 and config.train.warmup_steps == 2
    assert (config.eval.decisions, config.eval.cars, config.eval.suite) == (1200, 4, "heldout")
    assert config.hazard_window_s == (-3.0, 2.0) and config.loops == 2
    # the nested form it writes now reads back to the same config
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))
    assert load_config(tmp_path) == config


def test_a_flat_config_json_with_an_unknown_key_is_one_clear_error(tmp_path: Path) -> None:
    import json

    from dojo.loop.flywheel import load_config

    (tmp_path / "config.json").write_text(json.dumps({**_flat_config(tmp_path), "warp": 9}))
    with pytest.raises(DojoConfigError, match="not a loop config this Dojo reads.*warp"):
        load_config(tmp_path)


def test_a_candidate_warm_starts_from_the_deployed_net_of_its_own_kind_only() -> None:
    from dojo.loop.flywheel import warm_start_from

    assert warm_start_from("policy", "/r/loop0/policy.pt") == "/r/loop0/policy.pt"
    assert warm_start_from("perception", "planner:/r/loop0/checkpoint.pt") == (
        "/r/loop0/checkpoint.pt"
    )
    # baselines and nets of another kind: from scratch
    for net in ("policy", "perception", "both"):
        assert warm_start_from(net, "naive") is None and warm_start_from(net, "expert") is None
    assert warm_start_from("policy", "planner:/r/loop0/checkpoint.pt") is None
    assert warm_start_from("perception", "/r/loop0/policy.pt") is None
    assert warm_start_from("both", "/r/loop0/policy.pt") is None


def test_a_perception_loop_trains_the_planner_heads_alone_unless_told_otherwise(
    tmp_path: Path,
) -> None:
    from dojo.loop.config import NET_OVERRIDES

    perception = {"out": str(tmp_path / "p"), "net": "perception", "labels": "autolabel"}
    override = NET_OVERRIDES["perception"]["train.occupancy_weight"]
    assert LoopConfig.from_dict(perception).train.occupancy_weight == override.value == 0.0
    assert override.why.strip()
    # a value given wins, flat or nested, and a saved config (to_dict) reads back as it was
    assert (
        LoopConfig.from_dict({**perception, "occupancy_weight": 0.5}).train.occupancy_weight == 0.5
    )
    nested = LoopConfig.from_dict(
        {"net": "perception", "train": {"labels": "autolabel", "occupancy_weight": 2.0}}
    )
    assert nested.train.occupancy_weight == 2.0
    assert LoopConfig.from_dict(nested.to_dict()).train.occupancy_weight == 2.0
    # the other nets keep the stage's own default
    assert LoopConfig.from_dict({"net": "both"}).train.occupancy_weight == 1.0
    with pytest.raises(DojoConfigError, match="loop occupancy_weight"):
        LoopConfig.from_dict({**perception, "occupancy_weight": -1.0})
