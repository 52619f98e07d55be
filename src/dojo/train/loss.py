"""The policy loss and the learning-rate schedule.

Loss: smooth L1 (Huber, beta = 1) on the target ``[accel m/s^2, lane shift]`` (the driver's
acceleration and the loader's ``lane_shift``, see :class:`dojo.nets.DrivingPolicy` for why a
lane and not a steering angle) normalised per component, accel by ``ACCEL_SCALE_MPS2`` and the
lane shift by ``LANE_SHIFT_SCALE``. The scales are fixed (not fitted to a dataset, so losses of
two datasets or two runs compare): one m/s^2 is an ordinary manoeuvre, and half a lane is where
the car's rounding flips its choice, so a lane error counts as much as a clear braking error.
Huber rather than MSE: inside one scale unit it *is*
MSE (ordinary driving), beyond it the gradient stays bounded, so a few hard-braking or
takeover windows with targets many scales away (exactly what mining adds, -8 m/s^2 brakes)
cannot dominate a batch's gradient the way their squared error would, early in training when
the predictions are all near zero.

``--net occupancy``: a loss per grid cell (``--occupancy-loss``: cross-entropy, rare classes
weighted, or focal), averaged over the cells of a window, windows
without an occupancy label counting zero (:func:`dojo.nets.occupancy_losses.occupancy_loss`; divided
by the micro-batch size, so the split-independence above holds for it too). ``--net both``:
the policy loss + ``occupancy_weight`` x the occupancy loss, one backward through the shared
backbone. Validation reports the occupancy IoU (mean over the occupied classes, cells pooled
over the whole val split and all processes: :func:`dojo.nets.occupancy.iou_from_counts`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from dojo.nets.occupancy_losses import occupancy_loss

if TYPE_CHECKING:
    from dojo.train.config import TrainConfig

ACCEL_SCALE_MPS2 = 1.0  # [m/s^2] one unit of normalised acceleration error
LANE_SHIFT_SCALE = 0.5  # [lanes] one unit of normalised lane-shift error
HUBER_BETA = 1.0  # in normalised units: quadratic below, linear above
# a target that asks for a reaction: braking at least this hard [m/s^2] (the expert's cruise
# corrections stay within about -1), or heading for another lane
HAZARD_BRAKE_MPS2 = -2.0
HAZARD_LANE_SHIFT = 0.5  # [lanes]


def hazard_mask(action: torch.Tensor) -> torch.Tensor:
    """(B,) bool: the targets that ask for a reaction, braking at ``HAZARD_BRAKE_MPS2`` or harder
    or a lane change (``|lane shift| >= HAZARD_LANE_SHIFT``), from ``action`` (B, 2)."""
    return (action[:, 0] <= HAZARD_BRAKE_MPS2) | (action[:, 1].abs() >= HAZARD_LANE_SHIFT)


def policy_loss(
    pred: torch.Tensor,
    action: torch.Tensor,
    reduction: str = "mean",
    hazard_weight: float = 1.0,
    underbrake_weight: float = 1.0,
) -> torch.Tensor:
    """Smooth L1 between predicted and driven ``[accel m/s^2, lane shift]``, both (B, 2),
    each component divided by its fixed scale first; ``mean`` over batch and components.

    ``hazard_weight`` multiplies the loss of a window whose target asks for a reaction
    (:func:`hazard_mask`): they are a few percent of driving, yet they are where the critical
    interventions happen. ``underbrake_weight`` multiplies the acceleration error where the
    target brakes and the prediction brakes less: braking too little ends in a takeover, too
    much only in discomfort. Both 1: the plain loss. The weights scale each window's loss and
    the mean stays over the windows, so a batch split into micro-batches sums to the same.
    """
    scale = pred.new_tensor([ACCEL_SCALE_MPS2, LANE_SHIFT_SCALE])
    loss = F.smooth_l1_loss(
        pred / scale, action / scale, beta=HUBER_BETA, reduction="none"
    )  # (B, 2)
    if underbrake_weight != 1.0:
        under = (action[:, 0] < 0) & (pred[:, 0] > action[:, 0])
        loss = loss * torch.stack(
            [1.0 + (underbrake_weight - 1.0) * under.float(), torch.ones_like(loss[:, 1])], dim=1
        )
    if hazard_weight != 1.0:
        loss = loss * (1.0 + (hazard_weight - 1.0) * hazard_mask(action).float())[:, None]
    return loss.mean() if reduction == "mean" else loss.mean(dim=1).sum()


def occupancy_loss_for(config: TrainConfig) -> Callable[..., torch.Tensor]:
    """The occupancy loss a run asks for (``occupancy_loss``, ``rare_class_weight``,
    ``focal_gamma``): ``(logits, target, labelled[, reduction]) -> loss``."""
    return functools.partial(
        occupancy_loss,
        kind=config.occupancy_loss,
        rare_weight=config.rare_class_weight,
        gamma=config.focal_gamma,
    )


def lr_factor(
    step: int, steps: int, warmup_steps: int, schedule: str, min_lr_ratio: float
) -> float:
    """Multiplier of the peak LR for update ``step`` (0-based): linear warmup, then cosine/constant."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, steps - warmup_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


__all__ = [
    "ACCEL_SCALE_MPS2",
    "HAZARD_BRAKE_MPS2",
    "HAZARD_LANE_SHIFT",
    "HUBER_BETA",
    "hazard_mask",
    "LANE_SHIFT_SCALE",
    "lr_factor",
    "occupancy_loss_for",
    "policy_loss",
]
