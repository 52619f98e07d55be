"""The trainer on one process: it learns, it resumes exactly, it records what it did."""

from __future__ import annotations

import json
import math
import os
import signal
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from dojo.data.loader import WindowDataset
from dojo.errors import DojoConfigError, StorageFullError, TrainingDivergedError
from dojo.nets import load_policy, load_policy_extra
from dojo.train import Trainer, prepare, train
from dojo.train.launch import format_summary
from dojo.train.metrics import crc32c, masked_crc32c
from dojo.train.state import save_checkpoint
from dojo.train.trainer import ACCEL_SCALE_MPS2, LANE_SHIFT_SCALE, lr_factor, policy_loss
from tests.train.support import FleetData, tiny_config


def rows(run: Path, key: str = "loss") -> list[dict[str, Any]]:
    return [
        r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if key in r
    ]


def weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoint.pt", weights_only=True)["model"]


def test_loss_weighs_accel_and_lane_shift_by_their_scales() -> None:
    pred = torch.zeros(1, 2)
    # an error of one scale in either component counts the same: 0.5 (Huber, beta 1) over 2 components
    assert policy_loss(pred, torch.tensor([[ACCEL_SCALE_MPS2, 0.0]])).item() == pytest.approx(0.25)
    assert policy_loss(pred, torch.tensor([[0.0, LANE_SHIFT_SCALE]])).item() == pytest.approx(0.25)
    # beyond one scale the loss grows linearly, not quadratically: a -8 m/s^2 brake costs 7.5 / 2
    assert policy_loss(pred, torch.tensor([[-8.0, 0.0]])).item() == pytest.approx(3.75)


def test_hazard_and_underbrake_weights_scale_only_the_windows_they_name() -> None:
    pred = torch.zeros(3, 2)
    # a hard brake, a lane change, and a gentle correction (no hazard)
    action = torch.tensor([[-4.0, 0.0], [0.0, 1.0], [-0.5, 0.0]])
    plain = policy_loss(pred, action, reduction="sum")
    per = [policy_loss(pred[i : i + 1], action[i : i + 1]).item() for i in range(3)]
    assert plain.item() == pytest.approx(sum(per))
    hazard = policy_loss(pred, action, reduction="sum", hazard_weight=3.0).item()
    assert hazard == pytest.approx(3 * per[0] + 3 * per[1] + per[2])
    # predicting 0 where the target brakes is braking too little; braking harder than it is not
    under = policy_loss(pred, action, reduction="sum", underbrake_weight=2.0).item()
    accel_part = [
        policy_loss(pred[i : i + 1], action[i : i + 1] * torch.tensor([1.0, 0.0])).item()
        for i in range(3)
    ]
    assert under == pytest.approx(sum(per) + accel_part[0] + accel_part[2])
    over = torch.tensor([[-6.0, 0.0]])
    assert policy_loss(
        over, torch.tensor([[-4.0, 0.0]]), underbrake_weight=2.0
    ).item() == pytest.approx(policy_loss(over, torch.tensor([[-4.0, 0.0]])).item())


def test_learning_rate_warms_up_then_follows_a_cosine_to_the_floor() -> None:
    f = [lr_factor(s, 100, 10, "cosine", 0.1) for s in range(101)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0) and f[10] == pytest.approx(1.0)
    assert f[55] == pytest.approx(0.1 + 0.9 * 0.5) and f[100] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(f[10:], f[11:], strict=False))
    assert lr_factor(50, 100, 10, "constant", 0.1) == 1.0


def test_the_policy_learns_a_target_it_can_see(fleet_data: FleetData, tmp_path: Path) -> None:
    """The step is wired end to end (forward, loss, backward, clip, AdamW, schedule): on one batch
    of 16 windows whose targets are a function of the ego speed the net is given (about one
    scale unit in both components), 40 steps bring the loss down more than 10x (it does ~80x)."""
    trainer = Trainer(
        prepare(
            tiny_config(
                fleet_data,
                tmp_path / "fit",
                steps=40,
                batch_size=16,
                warmup_steps=0,
                lr=3e-3,
                schedule="constant",
            )
        )
    )
    batch = next(iter(trainer.loader))
    speed = batch["speed_mps"].float()
    batch["action"] = torch.stack(
        [speed / 10 - 1.0, torch.zeros_like(speed)], dim=1
    )  # [m/s^2, rad]
    batch["lane_shift"] = 0.5 * (speed / 15 - 1)  # [lanes], about one LANE_SHIFT_SCALE
    losses = [trainer.step([batch])[0] for _ in range(40)]
    assert losses[0] > 0.05 and losses[-1] < losses[0] / 10, losses


def _on_step(monkeypatch: pytest.MonkeyPatch, call: int, action: Callable[[], None]) -> None:
    """Run ``action`` at the start of the ``call``-th optimizer step (1-based)."""
    real_step = Trainer.step
    calls = 0

    def step(self: Trainer, micro: Any) -> tuple[float, float]:
        nonlocal calls
        calls += 1
        if calls == call:
            action()
        return real_step(self, micro)

    monkeypatch.setattr(Trainer, "step", step)


def test_resume_continues_the_same_loss_curve_bit_for_bit(
    fleet_data: FleetData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """14 steps straight vs the same run killed during step 8 (last checkpoint: step 4) and resumed.

    Compared: every step's loss, LR and gradient norm, the validation losses, the final weights
    and AdamW state, all for exact equality. Batch 32 in 2 accumulated micro-batches gives 9
    steps an epoch here, so the resumed part also crosses into a new epoch (new shuffle).
    """
    common = dict(
        steps=14, batch_size=32, grad_accum=2, warmup_steps=3, checkpoint_every=4, val_every=5
    )
    straight = tmp_path / "straight"
    train(tiny_config(fleet_data, straight, **common))

    broken = tmp_path / "broken"

    def killed() -> None:
        raise KeyboardInterrupt  # as if killed mid-step

    _on_step(monkeypatch, 8, killed)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(fleet_data, broken, **common))
    monkeypatch.undo()
    assert [r["step"] for r in rows(broken)] == list(range(1, 8))  # logged past the checkpoint
    assert torch.load(broken / "checkpoint.pt", weights_only=True)["train"]["step"] == 4
    assert not list(broken.glob("*.tmp"))

    summary = train(tiny_config(fleet_data, broken, **common, resume=True))
    assert summary["finished"] and summary["steps_this_run"] == 10

    a, b = rows(straight), rows(broken)
    assert max(r["epoch"] for r in a) == 1  # the run crossed an epoch boundary
    assert [r["step"] for r in b] == list(range(1, 15))
    for key in ("loss", "lr", "grad_norm", "epoch"):
        assert [r[key] for r in a] == [r[key] for r in b], key
    assert rows(straight, "val_loss") == rows(broken, "val_loss")
    wa, wb = weights(straight), weights(broken)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    oa = torch.load(straight / "checkpoint.pt", weights_only=True)["train"]["optimizer"]["state"]
    ob = torch.load(broken / "checkpoint.pt", weights_only=True)["train"]["optimizer"]["state"]
    assert all(torch.equal(oa[i]["exp_avg_sq"], ob[i]["exp_avg_sq"]) for i in oa)


def test_sigterm_stops_after_the_step_with_a_checkpoint_and_resume_ends_the_same(
    fleet_data: FleetData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real SIGTERM to this process during step 6 (checkpoints every 4 steps): the trainer ends
    step 6, checkpoints it, reports the stop; resumed, the run is the uninterrupted one."""
    common = dict(steps=10, batch_size=16, warmup_steps=2, checkpoint_every=4)
    straight = tmp_path / "straight"
    train(tiny_config(fleet_data, straight, **common))

    stopped = tmp_path / "stopped"
    before = signal.getsignal(signal.SIGTERM)
    # handled by the trainer, not the default (death)
    _on_step(monkeypatch, 6, lambda: os.kill(os.getpid(), signal.SIGTERM))
    summary = train(tiny_config(fleet_data, stopped, **common))
    monkeypatch.undo()
    assert signal.getsignal(signal.SIGTERM) is before  # the trainer's handler is gone again
    assert summary["stopped_by_signal"] and not summary["finished"] and summary["steps"] == 6
    assert torch.load(stopped / "checkpoint.pt", weights_only=True)["train"]["step"] == 6  # not 4
    assert "stopped by SIGTERM at step 6" in format_summary(summary)

    summary = train(tiny_config(fleet_data, stopped, **common, resume=True))
    assert (
        summary["finished"] and not summary["stopped_by_signal"] and summary["steps_this_run"] == 4
    )
    assert [r["loss"] for r in rows(stopped)] == [r["loss"] for r in rows(straight)]
    wa, wb = weights(straight), weights(stopped)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_a_run_leaves_metrics_event_files_and_loadable_checkpoints(
    fleet_data: FleetData, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    summary = train(tiny_config(fleet_data, out, steps=4, val_every=2, checkpoint_every=2))
    lines = rows(out)
    assert [r["step"] for r in lines] == [1, 2, 3, 4]
    for r in lines:
        assert set(r) == {
            "step",
            "epoch",
            "loss",
            "lr",
            "grad_norm",
            "samples_per_s",
            "data_wait_share",
            "step_s",
        }
        assert (
            r["samples_per_s"] > 0
            and 0.0 <= r["data_wait_share"] <= 1.0
            and math.isfinite(r["loss"])
        )
    vals = rows(out, "val_loss")
    assert [v["step"] for v in vals] == [2, 4] and all(
        v["val_windows"] == 2 * 8 for v in vals
    )  # val_batches 2
    assert summary["val_loss"] == vals[-1]["val_loss"]
    run = json.loads((out / "run.json").read_text())
    assert (
        run["dataset"] == f"{fleet_data.dataset}@v1"
        and len(run["dataset_hash"]) == 64
        and run["nproc"] == 1
    )
    # the checkpoint is a policy checkpoint too: the fleet and eval load it as it stands
    model = load_policy(out / "checkpoint.pt")
    assert all(torch.equal(v, weights(out)[k]) for k, v in model.state_dict().items())
    assert load_policy_extra(out / "policy.pt")["dataset"] == run["dataset"]
    # TensorBoard: TFRecord framing with valid CRCs around Event protobufs with our tags
    (events,) = list((out / "tb").glob("events.out.tfevents.*"))
    data, records = events.read_bytes(), []
    while data:
        (n,) = struct.unpack("<Q", data[:8])
        assert struct.unpack("<I", data[8:12])[0] == masked_crc32c(data[:8])
        body = data[12 : 12 + n]
        assert struct.unpack("<I", data[12 + n : 16 + n])[0] == masked_crc32c(body)
        records.append(body)
        data = data[16 + n :]
    assert b"brain.Event:2" in records[0]
    assert (
        sum(b"train/loss" in r for r in records) == 4
        and sum(b"val/loss" in r for r in records) == 2
    )
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value


def test_the_same_run_started_again_before_any_checkpoint_starts_over(
    fleet_data: FleetData, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    train(tiny_config(fleet_data, out, steps=2))
    (out / "checkpoint.pt").unlink()  # crashed before its first checkpoint: only run.json and logs
    train(tiny_config(fleet_data, out, steps=2))
    assert [r["step"] for r in rows(out)] == [1, 2]


def test_a_failed_checkpoint_write_leaves_the_previous_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"step": 1})

    def full_disk(*_: Any, **__: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(StorageFullError, match="checkpoint.pt: the disk is full"):
        save_checkpoint(path, {"step": 2})
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"step": 1} and not list(tmp_path.glob("*.tmp"))


def test_a_non_finite_loss_stops_the_run_as_diverged(
    fleet_data: FleetData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_step = Trainer.step
    calls = {"n": 0}

    def step(self: Trainer, micro: Any) -> tuple[float, float]:
        loss, grad_norm = real_step(self, micro)
        calls["n"] += 1
        return (math.nan, grad_norm) if calls["n"] == 3 else (loss, grad_norm)

    monkeypatch.setattr(Trainer, "step", step)
    with pytest.raises(TrainingDivergedError, match="the loss is nan at step 3") as info:
        train(tiny_config(fleet_data, tmp_path / "run", steps=4))
    assert info.value.step == 3


def test_validation_is_skipped_with_a_note_when_val_is_empty(
    fleet_data: FleetData, tmp_path: Path
) -> None:
    from dojo.data.datasets import load_dataset, save_dataset

    ds = load_dataset(fleet_data.store, fleet_data.dataset)
    train_only = [
        {k: v for k, v in e.items() if k != "split"} for e in ds.entries if e["split"] == "train"
    ]
    save_dataset(
        fleet_data.store, "trainonly", train_only, recipe=ds.manifest["recipe"], val_share=0.0
    )
    out = tmp_path / "run"
    summary = train(tiny_config(fleet_data, out, dataset="trainonly", steps=2, val_every=1))
    assert (
        summary["val_loss"] is None and "val split of trainonly@v1 is empty" in summary["notes"][0]
    )
    assert not rows(out, "val_loss")


def test_windows_come_from_the_train_split_only_once_each(
    fleet_data: FleetData, tmp_path: Path
) -> None:
    from dojo.data.datasets import load_dataset

    out = tmp_path / "run"
    train(tiny_config(fleet_data, out, steps=3, log_samples=True))
    lines = [
        json.loads(line) for line in (out / "samples" / "rank0.jsonl").read_text().splitlines()
    ]
    seen = [(c, int(f)) for line in lines for c, f in line["keys"]]
    ds = load_dataset(fleet_data.store, fleet_data.dataset)
    train_windows = set(
        WindowDataset(fleet_data.store, ds.split("train"), occupancy=False).shard_order(0, 1)
    )
    val_windows = set(
        WindowDataset(fleet_data.store, ds.split("val"), occupancy=False).shard_order(0, 1)
    )
    assert [line["step"] for line in lines] == [1, 2, 3]
    assert len(seen) == 24 and len(set(seen)) == 24 and set(seen) <= train_windows
    assert train_windows and val_windows and not train_windows & val_windows


def test_init_from_starts_from_the_given_policy_and_refuses_another_network(
    fleet_data: FleetData, tmp_path: Path
) -> None:
    first = train(tiny_config(fleet_data, tmp_path / "first", steps=3))
    start = load_policy(Path(first["run"]) / "policy.pt")
    # a fine-tuning run built from it holds exactly its weights before the first step
    trainer = Trainer(
        prepare(
            tiny_config(
                fleet_data, tmp_path / "tune", init_from=str(Path(first["run"]) / "policy.pt")
            )
        )
    )
    for name, w in start.state_dict().items():
        assert torch.equal(trainer.model.state_dict()[name], w), name
    fresh = Trainer(prepare(tiny_config(fleet_data, tmp_path / "fresh", seed=7)))
    assert any(
        not torch.equal(fresh.model.state_dict()[n], w) for n, w in start.state_dict().items()
    )
    policy = str(Path(first["run"]) / "policy.pt")
    for other, match in (  # another size, another kind of net: named, before any work
        ({"size": "base"}, "another network than this run's: size 'tiny'"),
        ({"net": "both"}, "holds a 'policy' checkpoint, not a 'both' one"),
    ):
        with pytest.raises(DojoConfigError, match=match):
            prepare(tiny_config(fleet_data, tmp_path / "other", init_from=policy, **other))
    with pytest.raises(DojoConfigError, match="nothing.pt"):
        prepare(
            tiny_config(fleet_data, tmp_path / "missing", init_from=str(tmp_path / "nothing.pt"))
        )
