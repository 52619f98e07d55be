"""The occupancy losses: per-cell cross-entropy, class-weighted, or focal.

Why more than plain cross-entropy: vehicles cover about 1-3% of the grid's cells (obstacles
less), so a net that never predicts them loses little, and "no vehicle" wins every argmax.
Two remedies are offered (``kind``); docs/benchmarks.md has the first comparison (too short a
budget to separate them yet):

* ``weighted``: the cross-entropy of a cell whose *label* is VEHICLE or OBSTACLE counts
  ``rare_weight`` times. The weight moves the decision boundary itself (at the optimum the
  net's rare-class probability is inflated about ``rare_weight`` times), so the argmax
  predicts vehicles where they are merely likely: recall for precision.
* ``focal`` (Lin et al. 2017): each cell's cross-entropy times ``(1 - p_t) ** gamma``, with
  p_t the probability the net gives the labelled class; the many easy cells (the road far
  from any car) stop drowning the few hard ones, without re-weighting the classes.

Every kind is a sum over cells divided by the window's cell count (weights are *not*
normalised away), so ``rare_weight`` scales exactly the rare cells' share and nothing else.
The defaults are declared once, in :mod:`dojo.train.config`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dojo.errors import DojoConfigError
from dojo.nets.options import FOCAL_GAMMA, OCCUPANCY_LOSS, OCCUPANCY_LOSSES, RARE_CLASS_WEIGHT
from dojo.world.occupancy import OBSTACLE, VEHICLE

RARE_CLASSES = (VEHICLE, OBSTACLE)  # the classes ``weighted`` up-weights
REDUCTIONS = ("mean", "sum")


def class_weights(
    classes: int, rare_weight: float, device: torch.device | None = None
) -> torch.Tensor:
    """float32 ``(classes,)``: 1 for every class, ``rare_weight`` for the RARE_CLASSES."""
    w = torch.ones(classes, device=device)
    w[list(RARE_CLASSES)] = float(rare_weight)
    return w


def occupancy_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    labelled: torch.Tensor,
    reduction: str = "mean",
    *,
    kind: str = OCCUPANCY_LOSS,
    rare_weight: float = RARE_CLASS_WEIGHT,
    gamma: float = FOCAL_GAMMA,
) -> torch.Tensor:
    """The per-cell loss ``kind`` averaged over the cells of each window, masked by ``labelled``.

    ``logits`` (B, K, R, S) float, ``target`` (B, R, S) class ids, ``labelled`` (B,) bool
    (``has_occupancy``). ``mean``: the sum over labelled windows divided by B, *all* windows,
    so an unlabelled window counts as zero loss rather than changing the divisor: the mean of
    equal-sized micro-batches' losses is then the global batch's, however the batch is split
    over processes and accumulation steps (the trainer's invariant). ``sum``: the plain sum
    over labelled windows (for validation, divided by the labelled count there).
    Per cell, with p_t the softmax probability of the labelled class t: ``ce`` = -log p_t;
    ``weighted`` = w_t * -log p_t (:func:`class_weights`); ``focal`` = (1 - p_t)^gamma * -log p_t.
    """
    if kind not in OCCUPANCY_LOSSES:
        raise DojoConfigError(
            f"occupancy loss kind={kind!r} is not known; choose one of: {', '.join(OCCUPANCY_LOSSES)}."
        )
    if reduction not in REDUCTIONS:
        raise DojoConfigError(f"occupancy loss reduction={reduction!r} must be 'mean' or 'sum'.")
    t = target.long()
    log_p = F.log_softmax(logits, dim=1).gather(1, t[:, None]).squeeze(1)  # (B, R, S): log p_t
    per_cell = -log_p  # (B, R, S)
    if kind == "weighted":
        per_cell = per_cell * class_weights(logits.shape[1], rare_weight, logits.device)[t]
    elif kind == "focal":
        per_cell = per_cell * (1.0 - log_p.exp()).clamp(min=0.0).pow(gamma)
    per_window = per_cell.flatten(1).mean(dim=1) * labelled.to(per_cell.dtype)  # (B,)
    return per_window.sum() / len(per_window) if reduction == "mean" else per_window.sum()


__all__ = ["RARE_CLASSES", "class_weights", "occupancy_loss"]
