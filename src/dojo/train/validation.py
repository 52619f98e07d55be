"""Validation during training: the loss terms, the occupancy IoU and the planner's errors
over the val split."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from dojo.nets.occupancy_metrics import (
    DISTANCE_BANDS_M,
    OCCUPIED_CLASSES,
    band_masks,
    band_name,
    cell_distance_m,
    class_histogram,
    iou_from_counts,
    prior_iou_counts,
    region_iou_counts,
    region_ious,
)
from dojo.nets.planner import PlannerErrors, planner_loss
from dojo.train.heads import Outputs
from dojo.train.loss import policy_loss
from dojo.world.occupancy import CLASS_NAMES, VEHICLE, OccupancySpec

if TYPE_CHECKING:
    from dojo.train.trainer import Trainer


def grid_regions(
    rows: int, cols: int, spec: OccupancySpec | None = None
) -> tuple[torch.Tensor, tuple[tuple[float, float], ...]]:
    """The region masks ``(G, rows, cols)`` of a grid and the bands they are (after the whole grid).

    ``spec``: where the ego sits in the grid (the loader's ``occupancy_spec``: the auto-labels
    say it; of the logged labels the store keeps the shape and cell size only, and every drive
    log so far is written with the default :class:`OccupancySpec`, so by default a grid of its
    shape is banded by its geometry). A grid of another shape gets the whole grid only (its
    band metrics are NaN) rather than bands from a guessed geometry.
    """
    spec = spec or OccupancySpec()
    if (rows, cols) != (spec.rows, spec.cols):
        return torch.ones((1, rows, cols), dtype=torch.bool), ()
    return band_masks(cell_distance_m(spec), DISTANCE_BANDS_M), DISTANCE_BANDS_M


def iou_metrics(counts: torch.Tensor, bands: tuple[tuple[float, float], ...]) -> dict[str, float]:
    """``{"vehicle": .., "obstacle": .., "not_drivable": .., "vehicle_0_20": ..}`` from region
    counts (2, 3, 1 + len(bands)); the vehicle bands of DISTANCE_BANDS_M are NaN when not banded."""
    out = {f"{CLASS_NAMES[VEHICLE]}_{band_name(b)}": math.nan for b in DISTANCE_BANDS_M}
    out.update(region_ious(counts, bands))
    return out


class Scores:
    """The validation metrics' sums over batches (:meth:`add`), pooled over processes
    (:meth:`all_reduce`), turned into the metrics once (:meth:`result`): what :func:`validate`
    reports, and what a benchmark scores held-out drives with.

    ``grid``: the (rows, cols) the occupancy head predicts ((0, 0): none); ``spec``: where the
    ego sits in it (see :func:`grid_regions`); ``occupancy_loss``: the run's
    (:func:`dojo.train.loss.occupancy_loss_for`).
    """

    def __init__(
        self,
        grid: tuple[int, int],
        spec: OccupancySpec | None,
        occupancy_loss: Callable[..., torch.Tensor],
        device: torch.device,
    ) -> None:
        rows, cols = grid
        masks, self.bands = grid_regions(rows, cols, spec)
        self.masks = masks.to(device)
        self.occupancy_loss = occupancy_loss
        # policy loss sum, windows, occupancy sum, labelled, planner loss sum
        self.sums = torch.zeros(5, dtype=torch.float64)
        self.counts = torch.zeros(2, len(OCCUPIED_CLASSES), len(masks), dtype=torch.int64)
        self.histogram = torch.zeros(len(CLASS_NAMES), rows, cols, dtype=torch.int64)  # (K, R, S)
        self.errors = PlannerErrors()
        self.planner = False  # whether any batch had planner outputs

    def add(self, out: Outputs, x: Mapping[str, torch.Tensor]) -> None:
        """One batch: the net's outputs ``out`` on the device batch ``x``."""
        self.sums[1] += len(x["action"])
        if out.controls is not None:
            self.sums[0] += float(policy_loss(out.controls, x["action"], reduction="sum"))
        if out.logits is not None:
            labelled, target = x["has_occupancy"], x["occupancy"]
            self.sums[2] += float(
                self.occupancy_loss(out.logits, target, labelled, reduction="sum")
            )
            self.sums[3] += float(labelled.sum())
            pred = out.logits.argmax(dim=1)
            self.counts += region_iou_counts(pred, target, self.masks, labelled).cpu()
            self.histogram += class_histogram(target, len(CLASS_NAMES), labelled).cpu()
        if out.planner is not None:
            self.planner = True
            valid = x["planner_valid"]
            self.sums[4] += float(planner_loss(out.planner, x["planner"], valid, reduction="sum"))
            self.errors.add(out.planner, x["planner"], valid)

    def all_reduce(self, world: int, device: torch.device) -> None:
        """Pool the sums of every process (all of them call this)."""
        sums, counts, histogram = self.sums, self.counts, self.histogram
        both = torch.cat([sums, counts.flatten().double(), histogram.flatten().double()])
        both = both.to(device)
        dist.all_reduce(both)
        both = both.cpu()
        n, m = counts.numel(), len(sums)
        self.sums = both[:m]
        self.counts = both[m : m + n].round().to(torch.int64).view_as(counts)
        self.histogram = both[m + n :].round().to(torch.int64).view_as(histogram)
        states: list[Any] = [None] * world
        dist.all_gather_object(states, self.errors.state())
        self.errors.merge(states)

    def result(
        self, net: str, occupancy_weight: float = 1.0, planner_weight: float = 1.0
    ) -> dict[str, Any]:
        """The metrics of a ``net`` run (keys in :func:`validate`)."""
        sums = self.sums
        windows, labelled_n = int(sums[1]), int(sums[3])
        policy_mean = float(sums[0]) / windows if windows else math.nan
        result: dict[str, Any] = {"val_windows": windows}
        if net == "policy":
            result["val_loss"] = policy_mean
            return result
        occ_mean = float(sums[2]) / labelled_n if labelled_n else math.nan
        counts, bands = self.counts, self.bands
        result["val_occupancy_loss"] = occ_mean
        result["val_iou"] = iou_from_counts(counts[..., 0])
        result.update({f"val_iou_{name}": v for name, v in iou_metrics(counts, bands).items()})
        prior = prior_iou_counts(self.histogram, self.masks.cpu())
        result.update({f"val_prior_iou_{n}": v for n, v in iou_metrics(prior, bands).items()})
        if net == "occupancy":
            result["val_loss"] = occ_mean
        elif net == "perception":  # weight 0: the occupancy head was not computed (NaN)
            result["val_loss"] = occupancy_weight * occ_mean if occupancy_weight else 0.0
        else:
            result["val_loss"] = policy_mean + occupancy_weight * occ_mean
        if self.planner or net == "perception":
            planner_mean = float(sums[4]) / windows if windows else math.nan
            result["val_planner_loss"] = planner_mean
            result.update({f"val_planner_{k}": v for k, v in self.errors.summary().items()})
            result["val_loss"] += planner_weight * planner_mean
        return result


def validate(t: Trainer) -> dict[str, Any] | None:
    """Validation of trainer ``t`` over the val split (up to ``val_batches`` micro-batches a process),
    all processes together.

    ``val_loss``: the training loss's terms as means over the split (the policy's over all
    windows, the occupancy's over the labelled ones); ``val_windows``; and for the nets with
    the occupancy head ``val_occupancy_loss``, ``val_iou`` (cells pooled, then the mean
    over the occupied classes present; NaN when no window is labelled), each class's
    ``val_iou_<class>``, the vehicle's per distance band from the ego ``val_iou_vehicle_0_20``,
    ``_20_40``, ``_40_80``, ``_0_40``, and the same keys as ``val_prior_iou_...``: the IoUs of
    the per-cell mode of the val labels themselves (:mod:`dojo.nets.occupancy_metrics`). With
    the planner heads, ``val_planner_loss`` and ``val_planner_<error>`` for each error of
    :meth:`dojo.nets.planner.PlannerErrors.summary` (medians over the split, all processes).
    """
    if t.val_loader is None or t.val_data is None:
        return None
    t.model.eval()
    t.val_data.set_epoch(0)
    net = t.prepared.net_config
    grid = (net["rows"], net["cols"]) if t.grids else (0, 0)  # the grid the head predicts
    scores = Scores(grid, t.val_data.occupancy_spec, t.occupancy_loss, t.device)
    with torch.no_grad():
        for i, batch in enumerate(t.val_loader):
            if t.config.val_batches and i >= t.config.val_batches:
                break
            x = t._to_device(batch)
            scores.add(t._predict(t.model, x), x)
    if t.env.distributed:
        scores.all_reduce(t.world, t.device)
    cfg = t.config
    return scores.result(cfg.net, cfg.occupancy_weight, cfg.planner_weight)


__all__ = ["Scores", "grid_regions", "iou_metrics", "validate"]
