"""Bad inputs: one clear DojoConfigError each, before any process group starts or file is written."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch.distributed as dist

from dojo.errors import DojoConfigError
from dojo.train import launch
from dojo.train.config import DistEnv, TrainConfig, prepare
from dojo.train.trainer import train
from tests.train.support import FleetData, tiny_config

BASE: dict[str, Any] = dict(dataset="d", store="s", out="o")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"steps": 0}, "steps=0 must be a whole number >= 1"),
        ({"steps": 2.5}, "steps=2.5 must be a whole number"),
        ({"batch_size": -4}, "batch_size=-4"),
        ({"grad_accum": 0}, "grad_accum=0"),
        ({"lr": 0.0}, "lr=0.0 must be > 0"),
        ({"lr": float("nan")}, "lr=nan must be a finite number"),
        ({"min_lr_ratio": 1.5}, "min_lr_ratio=1.5 must be >= 0 and <= 1"),
        ({"clip_grad_norm": -1.0}, "clip_grad_norm=-1.0"),
        ({"size": "huge"}, "size='huge' is not known; choose one of: tiny, base, large"),
        ({"net": "vision"}, "net='vision' is not known"),
        ({"occupancy_weight": -1.0}, "occupancy_weight=-1.0 must be >= 0"),
        ({"schedule": "linear"}, "schedule='linear'"),
        ({"precision": "fp16"}, "precision='fp16' is not known; choose one of: fp32, bf16"),
        ({"device": "tpu"}, "device='tpu'"),
        ({"compile": "yes"}, "compile='yes' must be True or False"),
        ({"nproc": 0}, "nproc=0"),
        ({"num_workers": -1}, "num_workers=-1"),
        ({"frames": 0}, "frames=0"),
        ({"dataset": ""}, "dataset='' must be a non-empty string"),
        ({"steps": 10, "warmup_steps": 20}, "warmup_steps=20 is longer than the run"),
        (
            {"batch_size": 10, "grad_accum": 4},
            "batch_size=10 does not split evenly into 1 processes x grad_accum 4",
        ),
        ({"batch_size": 6, "nproc": 4}, "batch_size=6 does not split evenly into 4 processes"),
    ],
)
def test_each_bad_field_is_named(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(DojoConfigError) as err:
        TrainConfig(**{**BASE, **overrides})
    assert message in str(err.value)
    assert str(err.value).count(".") >= 1 and "\n" not in str(err.value)


def _refused(config: TrainConfig, message: str, **kw: Any) -> None:
    """prepare() refuses ``config`` with ``message``, with no process group and nothing written."""
    before = set(Path(config.out).rglob("*")) if Path(config.out).exists() else None
    with pytest.raises(DojoConfigError) as err:
        prepare(config, **kw)
    assert message in str(err.value), str(err.value)
    assert not dist.is_initialized()
    after = set(Path(config.out).rglob("*")) if Path(config.out).exists() else None
    assert before == after  # the checks write nothing


def test_dataset_missing_empty_or_too_small(fleet_data: FleetData, tmp_path: Path) -> None:
    out = tmp_path / "run"
    _refused(tiny_config(fleet_data, out, dataset="nope"), "Dataset 'nope' does not exist in store")
    _refused(tiny_config(fleet_data, out, dataset=f"{fleet_data.dataset}@v7"), "does not exist; ")
    _refused(
        tiny_config(fleet_data, out, dataset=fleet_data.empty),
        "Dataset empty@v1 is empty: it has no train windows",
    )
    _refused(
        tiny_config(fleet_data, out, store=str(tmp_path / "nostore")), "is not a clip store folder"
    )
    _refused(
        tiny_config(fleet_data, out, batch_size=4096), "too few for one step of batch_size=4096"
    )


def test_more_processes_than_cores_or_bf16_on_cpu(fleet_data: FleetData, tmp_path: Path) -> None:
    cores = os.cpu_count() or 1
    many = tiny_config(fleet_data, tmp_path / "run", nproc=cores + 1, batch_size=8 * (cores + 1))
    _refused(
        many,
        f"nproc={cores + 1} processes on this machine but it has {cores} CPU cores",
        launching=cores + 1,
    )
    # under torchrun the count comes from the environment: LOCAL_WORLD_SIZE processes on this node
    env = DistEnv(rank=0, world_size=cores + 1, local_rank=0, local_world_size=cores + 1)
    _refused(
        tiny_config(fleet_data, tmp_path / "run", batch_size=8 * (cores + 1)), "CPU cores", env=env
    )
    _refused(
        tiny_config(fleet_data, tmp_path / "run", nproc=2),
        "nproc=2 but torchrun started 3",
        env=DistEnv(0, 3, 0, 1),
    )
    _refused(
        tiny_config(fleet_data, tmp_path / "run", precision="bf16", device="cpu"),
        "precision='bf16' (autocast) is for CUDA",
    )


def test_torchrun_environment_is_read() -> None:
    env = DistEnv.from_environ(
        {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    )
    assert env == DistEnv(3, 4, 1, 2) and env.distributed
    assert DistEnv.from_environ({}) == DistEnv(0, 1, 0, 1)
    with pytest.raises(DojoConfigError, match="do not fit"):
        DistEnv.from_environ({"RANK": "4", "WORLD_SIZE": "4"})


def test_output_folder_holding_another_run_or_another_net(
    fleet_data: FleetData, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    _refused(tiny_config(fleet_data, out, resume=True), "holds no run to resume")
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    _refused(tiny_config(fleet_data, stranger), "is not empty and holds no Dojo run")

    summary = train(tiny_config(fleet_data, out, steps=2))
    assert summary["finished"] and not dist.is_initialized()
    _refused(
        tiny_config(fleet_data, out, steps=2),
        "holds this run already (checkpoint at step 2); pass --resume",
    )
    _refused(
        tiny_config(fleet_data, out, steps=2, lr=3e-4),
        "holds another run (lr 0.001 there, 0.0003 here)",
    )
    _refused(
        tiny_config(fleet_data, out, steps=2, lr=3e-4, resume=True),
        "holds another run (lr 0.001 there",
    )
    _refused(
        tiny_config(fleet_data, out, steps=2, size="base", resume=True),
        "is of a 'policy' net of size 'tiny'; this run asks for a 'policy' net of size 'base'",
    )
    _refused(
        tiny_config(fleet_data, out, steps=2, frames=3), "holds another run (frames 2 there, 3 here"
    )
    # operational settings may change on resume: still the same run
    prepare(tiny_config(fleet_data, out, steps=2, resume=True, val_every=1, checkpoint_every=1))


def test_the_nproc_launcher_checks_before_starting_torchrun(
    fleet_data: FleetData,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    started: list[Any] = []

    def fake_torchrun(cmd: Any) -> int:
        started.append(cmd)
        return 0

    monkeypatch.setattr(launch, "run_torchrun", fake_torchrun)
    argv = [
        "--store",
        str(fleet_data.store),
        "--out",
        str(tmp_path / "run"),
        "--steps",
        "2",
        "--batch-size",
        "8",
        "--nproc",
        "2",
        "--no-progress",
    ]
    assert launch.main(["--dataset", "nope", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dojo train: error: Dataset 'nope' does not exist") and "\n" not in err
    assert launch.main(["--dataset", fleet_data.dataset, *argv, "--batch-size", "9"]) == 2
    assert "batch_size=9 does not split evenly into 2 processes" in capsys.readouterr().err
    assert started == [] and not dist.is_initialized()
    # a good command does reach torchrun, with the same flags but --nproc
    assert launch.main(["--dataset", fleet_data.dataset, *argv]) == 0
    (cmd,) = started
    assert cmd[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m"]
    assert (
        cmd[6] == "dojo.train"
        and "--nproc" not in cmd
        and cmd[cmd.index("--dataset") + 1] == fleet_data.dataset
    )


def test_dojo_train_wires_in_with_one_line() -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="dojo")
    launch.add_train_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        [
            "train",
            "--dataset",
            "hard@v2",
            "--store",
            "s",
            "--out",
            "o",
            "--steps",
            "30",
            "--size",
            "base",
            "--grad-accum",
            "2",
            "--resume",
        ]
    )
    assert args.func is launch.run
    config = launch.config_from_args(args)
    assert (config.dataset, config.size, config.steps, config.grad_accum, config.resume) == (
        "hard@v2",
        "base",
        30,
        2,
        True,
    )
    assert config.warmup_steps == 3  # a tenth of the run by default
    with pytest.raises(SystemExit):
        parser.parse_args(
            ["train", "--dataset", "d", "--store", "s", "--out", "o", "--size", "huge"]
        )
