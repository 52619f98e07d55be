"""Validation during training: the loss terms, the occupancy IoU and the planner's errors
over the val split."""

from __future__ import annotations

import math
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
    rows, cols = (net["rows"], net["cols"]) if t.grids else (0, 0)  # the grid the head predicts
    masks, bands = grid_regions(rows, cols, t.val_data.occupancy_spec)
    masks = masks.to(t.device)
    k = len(CLASS_NAMES)
    # policy loss sum, windows, occupancy sum, labelled, planner loss sum
    sums = torch.zeros(5, dtype=torch.float64)
    errors = PlannerErrors()
    counts = torch.zeros(2, len(OCCUPIED_CLASSES), len(masks), dtype=torch.int64)  # (2, 3, G)
    histogram = torch.zeros(k, rows, cols, dtype=torch.int64)  # (K, R, S) of the val labels
    with torch.no_grad():
        for i, batch in enumerate(t.val_loader):
            if t.config.val_batches and i >= t.config.val_batches:
                break
            x = t._to_device(batch)
            controls, logits, planner = t._predict(t.model, x)
            sums[1] += len(x["action"])
            if planner is not None:
                sums[4] += float(
                    planner_loss(planner, x["planner"], x["planner_valid"], reduction="sum")
                )
                errors.add(planner, x["planner"], x["planner_valid"])
            if controls is not None:
                sums[0] += float(policy_loss(controls, x["action"], reduction="sum"))
            if logits is not None:
                labelled, target = x["has_occupancy"], x["occupancy"]
                sums[2] += float(t.occupancy_loss(logits, target, labelled, reduction="sum"))
                sums[3] += float(labelled.sum())
                counts += region_iou_counts(logits.argmax(dim=1), target, masks, labelled).cpu()
                histogram += class_histogram(target, k, labelled).cpu()
    if t.env.distributed:
        both = torch.cat([sums, counts.flatten().double(), histogram.flatten().double()])
        both = both.to(t.device)
        dist.all_reduce(both)
        both = both.cpu()
        n, m = counts.numel(), len(sums)
        sums = both[:m]
        counts = both[m : m + n].round().to(torch.int64).view_as(counts)
        histogram = both[m + n :].round().to(torch.int64).view_as(histogram)
        if t.planner:
            states: list[Any] = [None] * t.world
            dist.all_gather_object(states, errors.state())
            errors.merge(states)
    windows, labelled_n = int(sums[1]), int(sums[3])
    policy_mean = float(sums[0]) / windows if windows else math.nan
    result: dict[str, Any] = {"val_windows": windows}
    if t.config.net == "policy":
        result["val_loss"] = policy_mean
        return result
    occ_mean = float(sums[2]) / labelled_n if labelled_n else math.nan
    result["val_occupancy_loss"] = occ_mean
    result["val_iou"] = iou_from_counts(counts[..., 0])
    result.update({f"val_iou_{name}": v for name, v in iou_metrics(counts, bands).items()})
    prior = prior_iou_counts(histogram, masks.cpu())
    result.update({f"val_prior_iou_{name}": v for name, v in iou_metrics(prior, bands).items()})
    result["val_loss"] = (
        occ_mean
        if t.config.net in ("occupancy", "perception")
        else policy_mean + t.config.occupancy_weight * occ_mean
    )
    if t.planner:
        planner_mean = float(sums[4]) / windows if windows else math.nan
        result["val_planner_loss"] = planner_mean
        result.update({f"val_planner_{k}": v for k, v in errors.summary().items()})
        result["val_loss"] += t.config.planner_weight * planner_mean
    return result


__all__ = ["grid_regions", "iou_metrics", "validate"]
