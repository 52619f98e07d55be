"""IoU of the occupancy grid: per class, per distance band from the ego, and a per-cell prior.

Everything here works on *counts* (intersections and unions of cells) that add up across
batches and processes: sum the counts, then turn them into IoUs once, so a metric is the same
however the split is cut. ``dojo.train.validation`` uses these during training; a perception
benchmark can call the same functions on held-out drives.

Regions: a region is a boolean mask over the grid's cells, ``(G, rows, cols)``. Region 0 is the
whole grid; the others are distance bands ``[lo, hi)`` [m] of the cell centre's distance from
the ego's centre (:func:`band_masks`, from the grid geometry of :func:`cell_distance_m`).

The per-cell prior (:func:`prior_iou_counts`): the grid that puts in each cell the class most
frequent there in a histogram of labels (:func:`class_histogram`), ties to the lower class id.
Built from the very labels it is scored on, it is the best "mode map" a split admits (slightly
optimistic as a baseline): a net that does not beat it has learned nothing the cell's place
alone does not tell. It is computed from the histogram alone, without a second pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from dojo.errors import DojoConfigError
from dojo.world.occupancy import CLASS_NAMES, NOT_DRIVABLE, OBSTACLE, VEHICLE, OccupancySpec

# The classes the IoU is taken over: space the ego cannot drive into. FREE is the complement,
# and EGO is the ego's own body, drawn at the same cells in every grid: counting it would give
# every network a near-perfect class for free and hide what it actually learned.
OCCUPIED_CLASSES = (VEHICLE, OBSTACLE, NOT_DRIVABLE)
# [m] the bands of the targets, then 0-40 m pooled (the near range as one figure).
# The default grid reaches 40 m ahead and 20 m behind and aside, so its 40-80 m band is the
# two far corners ahead only (cells 40 to 44.7 m away).
DISTANCE_BANDS_M: tuple[tuple[float, float], ...] = (
    (0.0, 20.0),
    (20.0, 40.0),
    (40.0, 80.0),
    (0.0, 40.0),
)


def cell_distance_m(spec: OccupancySpec | None = None) -> np.ndarray:
    """float64 ``(rows, cols)``: distance [m] of each cell centre from the ego's centre."""
    x, y = (spec or OccupancySpec()).centres()  # (rows,), (cols,) in the ego frame [m]
    return np.hypot(x[:, None], y[None, :])


def band_name(band: tuple[float, float]) -> str:
    """``(0, 20) -> "0_20"``: the suffix of a band's metric (``iou_vehicle_0_20``)."""
    return f"{band[0]:g}_{band[1]:g}".replace(".", "p")


def band_masks(
    distance_m: np.ndarray | torch.Tensor,
    bands: Sequence[tuple[float, float]] = DISTANCE_BANDS_M,
) -> torch.Tensor:
    """bool ``(1 + len(bands), rows, cols)``: the whole grid, then each band ``lo <= d < hi``."""
    d = torch.as_tensor(np.asarray(distance_m, dtype=np.float64))  # (R, S)
    if d.dim() != 2:
        raise DojoConfigError(f"band_masks: distance_m must be (rows, cols); got {tuple(d.shape)}.")
    for lo, hi in bands:
        if not 0.0 <= lo < hi:
            raise DojoConfigError(f"band_masks: band ({lo}, {hi}) must have 0 <= lo < hi [m].")
    masks = [torch.ones_like(d, dtype=torch.bool)] + [(d >= lo) & (d < hi) for lo, hi in bands]
    return torch.stack(masks)  # (G, R, S)


def _region_sums(
    inter_cell: torch.Tensor, union_cell: torch.Tensor, masks: torch.Tensor
) -> torch.Tensor:
    """Per-cell counts (3, R, S) of each occupied class summed over each region: int64 (2, 3, G)."""
    m = masks.to(inter_cell.device, torch.int64)[None]  # (1, G, R, S)
    inter = (inter_cell.to(torch.int64)[:, None] * m).sum(dim=(-2, -1))  # (3, G)
    union = (union_cell.to(torch.int64)[:, None] * m).sum(dim=(-2, -1))  # (3, G)
    return torch.stack([inter, union])  # (2, 3, G)


def region_iou_counts(
    pred: torch.Tensor,
    target: torch.Tensor,
    masks: torch.Tensor,
    labelled: torch.Tensor | None = None,
) -> torch.Tensor:
    """Intersections and unions of each of the OCCUPIED_CLASSES in each region: int64 ``(2, 3, G)``.

    ``pred``, ``target``: class ids (B, R, S) (``pred`` is ``logits.argmax(1)``); ``masks``
    (G, R, S) from :func:`band_masks`; windows with ``labelled`` (B,) False are left out.
    """
    if pred.shape != target.shape:
        raise DojoConfigError(
            f"iou counts: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ."
        )
    if tuple(masks.shape[1:]) != tuple(pred.shape[1:]):
        raise DojoConfigError(
            f"iou counts: region masks {tuple(masks.shape)} do not fit grids {tuple(pred.shape)}."
        )
    if labelled is not None:
        pred, target = pred[labelled], target[labelled]
    classes = torch.tensor(OCCUPIED_CLASSES, device=pred.device)[:, None, None, None]  # (3,1,1,1)
    p, t = pred[None] == classes, target[None] == classes  # (3, B, R, S)
    return _region_sums((p & t).sum(dim=1), (p | t).sum(dim=1), masks)  # (2, 3, G)


def iou_counts(
    pred: torch.Tensor, target: torch.Tensor, labelled: torch.Tensor | None = None
) -> torch.Tensor:
    """Intersections and unions of each of the OCCUPIED_CLASSES over the whole grid: int64 ``(2, 3)``."""
    whole = torch.ones((1, *pred.shape[1:]), dtype=torch.bool, device=pred.device)
    return region_iou_counts(pred, target, whole, labelled)[..., 0]  # (2, 3)


def class_histogram(
    target: torch.Tensor, classes: int, labelled: torch.Tensor | None = None
) -> torch.Tensor:
    """int64 ``(classes, R, S)``: how many labelled windows hold each class in each cell."""
    if labelled is not None:
        target = target[labelled]
    k = torch.arange(classes, device=target.device)[:, None, None, None]  # (K, 1, 1, 1)
    return (target[None] == k).sum(dim=1).to(torch.int64)  # (K, R, S)


def prior_iou_counts(histogram: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """IoU counts ``(2, 3, G)`` of the per-cell mode of ``histogram`` (K, R, S) against the labels it counts.

    With n_c the count of class c in a cell, N the cell's windows and P_c the cells whose mode
    is c: intersection_c = sum over P_c of n_c, union_c = sum over P_c of N + sum of n_c - the
    intersection; exactly what scoring the mode map window by window would give.
    """
    h = histogram.to(torch.int64)  # (K, R, S)
    mode = h.argmax(dim=0)  # (R, S): the first maximum, so ties go to the lower class id
    total = h.sum(dim=0)  # (R, S)
    n = h[list(OCCUPIED_CLASSES)]  # (3, R, S)
    chosen = mode[None] == torch.tensor(OCCUPIED_CLASSES, device=h.device)[:, None, None]  # (3,R,S)
    inter = n * chosen  # (3, R, S)
    return _region_sums(inter, total * chosen + n - inter, masks)  # (2, 3, G)


def iou_from_counts(counts: torch.Tensor | Sequence[Sequence[int]]) -> float:
    """Mean IoU over the occupied classes present: those with a non-empty union.

    IoU_c = |pred = c and target = c| / |pred = c or target = c|, cells pooled over every
    labelled window; the mean is over the classes c in OCCUPIED_CLASSES that occur in the
    target or the prediction (a class in neither says nothing, a class only predicted counts as
    0). NaN when no occupied class occurs at all.
    """
    c = torch.as_tensor(counts, dtype=torch.float64)  # (2, 3)
    present = c[1] > 0
    if not bool(present.any()):
        return math.nan
    return float((c[0][present] / c[1][present]).mean())


def iou_per_class(counts: torch.Tensor | Sequence[Sequence[int]]) -> dict[str, float]:
    """IoU of each of the OCCUPIED_CLASSES by name (NaN for a class in neither prediction nor target).

    What the mean hides: a static class (the road's edges) is easy and can carry the mean while
    the moving one (vehicles) is still missed.
    """
    c = torch.as_tensor(counts, dtype=torch.float64)  # (2, 3)
    return {
        CLASS_NAMES[k]: float(c[0][i] / c[1][i]) if c[1][i] > 0 else math.nan
        for i, k in enumerate(OCCUPIED_CLASSES)
    }


def region_ious(
    counts: torch.Tensor,
    bands: Sequence[tuple[float, float]] = DISTANCE_BANDS_M,
    banded: Sequence[int] = (VEHICLE,),
) -> dict[str, float]:
    """IoUs by name from region counts ``(2, 3, 1 + len(bands))``: ``vehicle``, ``obstacle``,
    ``not_drivable`` over the whole grid, and ``<class>_<band>`` (``vehicle_0_20``...) for
    each class in ``banded``. NaN where a class is in neither prediction nor target."""
    c = torch.as_tensor(counts)
    if tuple(c.shape) != (2, len(OCCUPIED_CLASSES), 1 + len(bands)):
        raise DojoConfigError(
            f"region_ious: counts {tuple(c.shape)} do not fit {len(bands)} bands "
            f"(expected (2, {len(OCCUPIED_CLASSES)}, {1 + len(bands)}))."
        )
    out = iou_per_class(c[..., 0])
    for k in banded:
        if k not in OCCUPIED_CLASSES:
            raise DojoConfigError(f"region_ious: class {k} is not one of {OCCUPIED_CLASSES}.")
        for g, band in enumerate(bands, start=1):
            out[f"{CLASS_NAMES[k]}_{band_name(band)}"] = iou_per_class(c[..., g])[CLASS_NAMES[k]]
    return out


def occupancy_iou(
    pred: torch.Tensor, target: torch.Tensor, labelled: torch.Tensor | None = None
) -> float:
    """Mean IoU of the occupied classes of one batch (see :func:`iou_from_counts`)."""
    return iou_from_counts(iou_counts(pred, target, labelled))


__all__ = [
    "DISTANCE_BANDS_M",
    "OCCUPIED_CLASSES",
    "band_masks",
    "band_name",
    "cell_distance_m",
    "class_histogram",
    "iou_counts",
    "iou_from_counts",
    "iou_per_class",
    "occupancy_iou",
    "prior_iou_counts",
    "region_iou_counts",
    "region_ious",
]
