"""Validation during training: the loss terms and the occupancy IoU over the val split."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from dojo.nets.occupancy import iou_counts, iou_from_counts, iou_per_class, occupancy_loss
from dojo.train.loss import policy_loss

if TYPE_CHECKING:
    from dojo.train.trainer import Trainer


def validate(t: Trainer) -> dict[str, Any] | None:
    """Validation of trainer ``t`` over the val split (up to ``val_batches`` micro-batches a process),
    all processes together.

    ``val_loss``: the training loss's terms as means over the split (the policy's over all
    windows, the occupancy's over the labelled ones); ``val_windows``; and for the nets with
    the occupancy head ``val_occupancy_loss``, ``val_iou`` (cells pooled, then the mean
    over the occupied classes present; NaN when no window is labelled) and each class's
    ``val_iou_<class>``.
    """
    if t.val_loader is None or t.val_data is None:
        return None
    t.model.eval()
    t.val_data.set_epoch(0)
    sums = torch.zeros(
        4, dtype=torch.float64
    )  # (policy loss sum, windows, occupancy loss sum, labelled)
    counts = torch.zeros(
        2, 3, dtype=torch.int64
    )  # IoU (intersections, unions) of the occupied classes
    with torch.no_grad():
        for i, batch in enumerate(t.val_loader):
            if t.config.val_batches and i >= t.config.val_batches:
                break
            x = t._to_device(batch)
            controls, logits = t._predict(t.model, x)
            sums[1] += len(x["action"])
            if controls is not None:
                sums[0] += float(policy_loss(controls, x["action"], reduction="sum"))
            if logits is not None:
                labelled = x["has_occupancy"]
                sums[2] += float(occupancy_loss(logits, x["occupancy"], labelled, reduction="sum"))
                sums[3] += float(labelled.sum())
                counts += iou_counts(logits.argmax(dim=1), x["occupancy"], labelled).cpu()
    if t.env.distributed:
        both = torch.cat([sums, counts.flatten().to(torch.float64)]).to(t.device)
        dist.all_reduce(both)
        both = both.cpu()
        sums, counts = both[:4], both[4:].round().to(torch.int64).view(2, 3)
    windows, labelled_n = int(sums[1]), int(sums[3])
    policy_mean = float(sums[0]) / windows if windows else math.nan
    result: dict[str, Any] = {"val_windows": windows}
    if t.config.net == "policy":
        result["val_loss"] = policy_mean
        return result
    occ_mean = float(sums[2]) / labelled_n if labelled_n else math.nan
    result["val_occupancy_loss"] = occ_mean
    result["val_iou"] = iou_from_counts(counts)
    result.update({f"val_iou_{name}": iou for name, iou in iou_per_class(counts).items()})
    result["val_loss"] = (
        occ_mean
        if t.config.net == "occupancy"
        else policy_mean + t.config.occupancy_weight * occ_mean
    )
    return result


__all__ = ["validate"]
