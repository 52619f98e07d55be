"""`dojo bench perception`: the perception heads learned from auto-labels, scored on held-out drives.

One run, end to end, in a temporary store:

1. **drive** a fleet on training seeds and a smaller one on held-out seeds (``dojo drive``,
   manual mode: the human driver; full logging), **ingest** both;
2. **auto-label** every drive (:func:`dojo.data.autolabel.autolabel`) under the rig's
   visibility rule (:func:`dojo.data.autolabel.visibility.scene_visibility`: the rule on the
   logged scene, with the drive's own rig);
3. **train** ``--net perception --labels autolabel`` (occupancy + planner heads on one tiny
   backbone) on the training drives for the CPU budget: a constant learning rate after warmup,
   stopped by the wall clock (the trainer's own stop-after-this-step, checkpointed);
4. **score** the held-out drives with the trainer's validation metrics
   (:class:`dojo.train.validation.Scores`): vehicle IoU per distance band, obstacle and
   not-drivable IoU, beside the per-cell prior of the held-out labels themselves (the
   reference: a net that does not beat it learned nothing the cell's place does not tell),
   and the planner's median errors, beside a constant guess (the held-out median itself).

The issue's targets (:data:`TARGETS`) are stated with each result as met or missed.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dojo.bench.machine import machine_info
from dojo.data.autolabel import autolabel
from dojo.data.autolabel.visibility import scene_visibility
from dojo.data.catalog import query
from dojo.data.datasets import save_dataset
from dojo.data.ingest import ingest
from dojo.data.loader import WindowDataset, make_loader
from dojo.data.store import Store
from dojo.fleet.config import DriveConfig
from dojo.fleet.drive import drive
from dojo.nets.targets import GAP_REACH_M, LEAD_GAP
from dojo.train import heads
from dojo.train.config import TrainConfig, prepare
from dojo.train.dist import process_group
from dojo.train.loss import occupancy_loss_for
from dojo.train.trainer import Trainer
from dojo.train.validation import Scores
from dojo.validate import number, whole
from dojo.world.scenarios import HELDOUT_SEEDS, TRAIN_SEEDS

DEFAULT_MINUTES = 20.0  # [min] training budget (the default budget is at most 30)
DATASET = "perception"
# the targets: (result key, comparison, bound)
TARGETS: tuple[tuple[str, str, float], ...] = (
    ("iou_vehicle_0_40", ">=", 0.5),
    ("iou_vehicle_40_80", ">=", 0.3),
    ("iou_obstacle", ">=", 0.3),
    ("iou_not_drivable", ">=", 0.9),
    ("lead_gap_rel_error_median", "<=", 0.10),
    ("closing_speed_error_mps_median", "<=", 1.0),
)


def _drive_fleet(out: Path, cars: int, minutes: float, heldout: bool) -> None:
    seed = HELDOUT_SEEDS.start if heldout else TRAIN_SEEDS.start
    cfg = DriveConfig(
        out=str(out), cars=cars, minutes=minutes, mode="manual", heldout=heldout, seed=seed
    )
    drive(cfg)


def _entries(store: Path, drives: set[str]) -> list[dict[str, Any]]:
    """One dataset entry per clip of ``drives``: every window of them."""
    _, rows = query(
        store,
        "SELECT clip_id, drive_id, t0_s, t1_s, frames, content_hash, family FROM clips "
        "ORDER BY drive_id, start_frame",
    )
    return [
        {
            "clip_id": c,
            "drive_id": d,
            "t0_s": float(t0),
            "t1_s": float(t1),
            "frames": int(n),
            "seconds": float(t1) - float(t0),
            "triggers": ["all"],
            "content_hash": h,
            "family": fam,
            "label_source": "autolabel",
        }
        for c, d, t0, t1, n, h, fam in rows
        if d in drives
    ]


def _train(config: TrainConfig, budget_s: float) -> tuple[Trainer, dict[str, Any]]:
    """Train ``config`` until ``budget_s`` of wall clock have passed (or its steps are done)."""
    prepared = prepare(config)
    with process_group(prepared.env, prepared.device):
        trainer = Trainer(prepared)
        timer = threading.Timer(budget_s, lambda: setattr(trainer, "term_requested", True))
        timer.start()
        try:
            summary = trainer.fit()
        finally:
            timer.cancel()
    return trainer, summary


def _score(trainer: Trainer, data: WindowDataset, batch_size: int) -> tuple[dict[str, Any], Scores]:
    """The held-out metrics of the trained net (the keys of :meth:`Scores.result`)."""
    model, device = trainer.model, trainer.device
    model.eval()
    scores = Scores(
        data.occupancy_shape, data.occupancy_spec, occupancy_loss_for(trainer.config), device
    )
    with torch.no_grad():
        for batch in make_loader(data, batch_size=batch_size):
            x = heads.to_device(batch, device, grids=True, planner=True)
            scores.add(heads.predict(model, "perception", x, contextlib.nullcontext()), x)
    return scores.result("perception"), scores


def _constant_guess(scores: Scores) -> float:
    """Median relative lead-gap error of always guessing the held-out leads' median gap."""
    _, true, valid = scores.errors.state()
    gap = true[:, LEAD_GAP]
    within = valid[:, 1] & (gap < GAP_REACH_M)
    if not within.any():
        return math.nan
    guess = float(np.median(gap[within]))
    return float(np.median(np.abs(guess - gap[within]) / gap[within]))


def bench_perception(
    minutes: float = DEFAULT_MINUTES,
    *,
    cars: int = 8,
    drive_minutes: float = 3.0,
    heldout_cars: int = 4,
    heldout_minutes: float = 2.0,
    size: str = "tiny",
    batch_size: int = 16,
    work: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Drive, ingest, auto-label, train for ``minutes`` of wall clock and score held-out drives."""
    number("minutes", minutes, 0.0, low_open=True)
    for name, value in (("cars", cars), ("heldout_cars", heldout_cars), ("batch_size", batch_size)):
        whole(name, value, 1)
    number("drive_minutes", drive_minutes, 0.0, low_open=True)
    number("heldout_minutes", heldout_minutes, 0.0, low_open=True)
    say = log or (lambda _m: None)
    with contextlib.ExitStack() as stack:
        root = (
            Path(work)
            if work is not None
            else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        )
        tick = time.perf_counter()
        _drive_fleet(root / "logs" / "train", cars, drive_minutes, heldout=False)
        _drive_fleet(root / "logs" / "heldout", heldout_cars, heldout_minutes, heldout=True)
        store = root / "store"
        ingest([root / "logs" / "train"], store, workers=1)
        train_drives = set(Store(store).drive_ids())
        ingest([root / "logs" / "heldout"], store, workers=1)
        heldout = set(Store(store).drive_ids()) - train_drives
        drive_s = time.perf_counter() - tick
        say(f"drove and ingested in {drive_s:.0f} s")
        labels = autolabel(str(store), scene_visibility)
        say(
            f"auto-labelled {labels.frames} frames at {labels.as_dict()['frames_per_s']:.0f} frames/s"
        )
        save_dataset(
            store,
            DATASET,
            _entries(store, train_drives),
            # whole clips, not windows around moments: the card reads "+0 s to +0 s around ..."
            recipe={
                "command": "dojo bench perception",
                "triggers": ["whole clips"],
                "window_s": [0.0, 0.0],
                "sample_normal": 0.0,
                "seed": 0,
            },
            val_share=0.0,
        )
        config = TrainConfig(
            dataset=DATASET,
            store=str(store),
            out=str(root / "run"),
            net="perception",
            labels="autolabel",
            size=size,
            steps=10_000_000,  # the wall clock stops it
            warmup_steps=50,
            schedule="constant",
            batch_size=batch_size,
            checkpoint_every=0,
            val_every=0,
            progress=False,
        )
        trainer, summary = _train(config, minutes * 60.0)
        say(f"trained {summary['steps']} steps in {summary['wall_s']:.0f} s")
        data = WindowDataset(
            store, _entries(store, heldout), frames=config.frames, shuffle=False, labels="autolabel"
        )
        val, scores = _score(trainer, data, batch_size=32)
    result = _result(val, scores)
    result.update(
        train_minutes=summary["wall_s"] / 60.0,
        budget_minutes=minutes,
        train_steps=summary["steps"],
        train_windows=trainer.prepared.train_windows,
        train_windows_unlabelled=summary["train_windows_unlabelled"],
        samples_per_s=summary["samples_per_s"],
        heldout_windows=val["val_windows"],
        heldout_windows_unlabelled=data.unlabelled_windows,
        drives_train=len(train_drives),
        drives_heldout=len(heldout),
        autolabel_frames=labels.frames,
        autolabel_frames_per_s=labels.as_dict()["frames_per_s"],
        autolabel_partial=len(labels.drives_partial),
        autolabel_refused=len(labels.drives_refused),
        visibility="dojo.data.autolabel.visibility.scene_visibility: each drive's rig on its scene",
        size=size,
        batch_size=batch_size,
        machine=machine_info(),
    )
    result["targets"] = {
        key: {"bound": f"{op} {bound:g}", "value": result[key], "met": _met(result[key], op, bound)}
        for key, op, bound in TARGETS
    }
    return result


def _met(value: float, op: str, bound: float) -> bool:
    if not math.isfinite(value):
        return False
    return value >= bound if op == ">=" else value <= bound


def _result(val: dict[str, Any], scores: Scores) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("vehicle_0_20", "vehicle_20_40", "vehicle_40_80", "vehicle_0_40"):
        out[f"iou_{name}"] = val[f"val_iou_{name}"]
        out[f"prior_iou_{name}"] = val[f"val_prior_iou_{name}"]
    for name in ("vehicle", "obstacle", "not_drivable"):
        out[f"iou_{name}"] = val[f"val_iou_{name}"]
        out[f"prior_iou_{name}"] = val[f"val_prior_iou_{name}"]
    for key, value in val.items():
        if key.startswith("val_planner_") and key != "val_planner_loss":
            out[key.removeprefix("val_planner_")] = value
    out["constant_guess_lead_gap_rel_error_median"] = _constant_guess(scores)
    return out


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) and math.isfinite(v) else str(v)


def format_perception(result: dict[str, Any]) -> str:
    """The result as a table: each figure beside its reference and its target."""
    lines = [
        f"perception heads ({result['size']}) trained {result['train_minutes']:.1f} min "
        f"({result['train_steps']} steps, {result['train_windows']} windows of "
        f"{result['drives_train']} drives); scored on {result['heldout_windows']} windows of "
        f"{result['drives_heldout']} held-out drives",
        f"{'metric':<34}{'ours':>9}{'reference':>11}  target",
    ]
    targets = result["targets"]
    rows = [
        ("iou_vehicle_0_20", "prior_iou_vehicle_0_20"),
        ("iou_vehicle_20_40", "prior_iou_vehicle_20_40"),
        ("iou_vehicle_0_40", "prior_iou_vehicle_0_40"),
        ("iou_vehicle_40_80", "prior_iou_vehicle_40_80"),
        ("iou_obstacle", "prior_iou_obstacle"),
        ("iou_not_drivable", "prior_iou_not_drivable"),
        ("lead_gap_rel_error_median", "constant_guess_lead_gap_rel_error_median"),
        ("closing_speed_error_mps_median", None),
        ("inv_ttc_error_per_s_median", None),
        ("adjacent_gap_rel_error_median", None),
    ]
    for key, ref in rows:
        t = targets.get(key)
        mark = f"{t['bound']} {'met' if t['met'] else 'MISSED'}" if t else ""
        reference = _fmt(result[ref]) if ref else "-"
        lines.append(f"{key:<34}{_fmt(result[key]):>9}{reference:>11}  {mark}")
    lines.append(
        f"auto-labels: {result['autolabel_frames']} frames at "
        f"{result['autolabel_frames_per_s']:.0f} frames/s; machine: {result['machine']['cpu']}, "
        f"{result['machine']['cores']} cores"
    )
    return "\n".join(lines)


__all__ = ["DEFAULT_MINUTES", "TARGETS", "bench_perception", "format_perception"]
