"""The planner heads: lead gap, closing speed, inverse TTC and the next lanes' gaps, as one
small regression head on the shared backbone, its masked loss, and its validation errors.

Data flow, for B cars and P planner targets (:data:`dojo.nets.targets.PLANNER_TARGETS`, 7)::

    keys (B, N, D)  what the occupancy head attends to (camera tokens, and for its spatial
                    variant each camera's patches: where in a picture, so how far and which lane)
      -> cross-attention from one learned query per target: (B, P, D); the query added back
      -> LayerNorm + Linear + ReLU per target (B, P, H), one output weight row per target
      -> offset + spread x that: the targets' encoded values (B, P) (ln gap, m/s, 1/s)

The fixed offset and spread per target put a zero-initialised output at a typical value
(a 20 m gap, no closing) on the scale the target moves on, as a normalised output would.

Loss (:func:`planner_loss`): smooth L1 (Huber, beta 1) on ``(predicted - target) / scale``
per target, the scales fixed (:data:`LOSS_SCALE`: 0.1 in ln gap, a 10 % gap error; 1 m/s;
0.1 1/s), targets not asked for (``valid`` False) counting zero; per window the mean over the
P targets, then the mean over the B windows (so, as the occupancy loss, it does not depend on
how a global batch is split).

Errors (:class:`PlannerErrors`): collected per window, medians at the end: the lead gap's
relative error where the true lead is within the reach (80 m), the closing speed's absolute
error where it is within 40 m, the inverse TTC's absolute error [1/s] where there is a lead,
and each next-lane gap's relative error where that gap is within the reach.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dojo.errors import DojoConfigError
from dojo.nets.policy import SIZES, cross_attention
from dojo.nets.targets import (
    CLOSING,
    GAP_REACH_M,
    GAP_TARGETS,
    INV_TTC,
    LEAD_GAP,
    PLANNER_TARGETS,
    decode_targets,
)

# per target, in PLANNER_TARGETS order: where a zero output sits and how far one unit moves it
_GAP_OFFSET = math.log(20.0)
OFFSET = tuple(_GAP_OFFSET if i in GAP_TARGETS else 0.0 for i in range(len(PLANNER_TARGETS)))
SPREAD = tuple(1.0 if i in GAP_TARGETS else (5.0, 5.0, 0.5)[i] for i in range(len(PLANNER_TARGETS)))
LOSS_SCALE = tuple(
    0.1 if i in GAP_TARGETS else (1.0, 1.0, 0.1)[i] for i in range(len(PLANNER_TARGETS))
)
HUBER_BETA = 1.0  # in scale units: quadratic below, linear above
CLOSING_RANGE_M = 40.0  # [m] closing speed is scored for leads this near


class PlannerHead(nn.Module):
    """Keys ``(B, N, D)`` -> the encoded planner targets ``(B, P)``; layers in the module doc."""

    def __init__(self, size: str, targets: int = len(PLANNER_TARGETS)) -> None:
        super().__init__()
        if size not in SIZES:
            raise DojoConfigError(f"PlannerHead size={size!r} is not one of {', '.join(SIZES)}.")
        if targets != len(PLANNER_TARGETS):
            raise DojoConfigError(
                f"PlannerHead targets={targets!r}: the planner predicts {len(PLANNER_TARGETS)} "
                f"({', '.join(PLANNER_TARGETS)})."
            )
        w = SIZES[size]
        d, hidden = w.token, w.hidden // 2
        self.heads = w.heads
        self.queries = nn.Parameter(torch.randn(targets, d) * 0.02)  # (P, D)
        self.q_proj = nn.Linear(d, d)
        self.kv_proj = nn.Linear(d, 2 * d)
        self.out_proj = nn.Linear(d, d)
        self.mix = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, hidden), nn.ReLU(inplace=True))
        self.weight = nn.Parameter(torch.zeros(targets, hidden))  # (P, H): start at the offsets
        self.bias = nn.Parameter(torch.zeros(targets))  # (P,)
        self.register_buffer("offset", torch.tensor(OFFSET), persistent=False)
        self.register_buffer("spread", torch.tensor(SPREAD), persistent=False)

    def forward(self, keys: torch.Tensor) -> torch.Tensor:
        """Encoded targets ``(B, P)`` (ln gap [ln m], closing [m/s], inverse TTC [1/s])."""
        d = keys.shape[-1]
        k, v = self.kv_proj(keys).split(d, dim=-1)  # each (B, N, D)
        seen = cross_attention(self.q_proj(self.queries)[None], k, v, self.heads)  # (B, P, D)
        h = self.mix(self.queries + self.out_proj(seen))  # (B, P, H)
        z = (h * self.weight).sum(dim=-1) + self.bias  # (B, P)
        return self.offset + self.spread * z


def planner_loss(
    pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """Masked Huber loss of encoded ``pred`` against ``target``, both (B, P), ``valid`` (B, P)
    bool; ``mean`` over windows of each window's mean over P (invalid counting 0), or ``sum``
    over windows."""
    if pred.shape != target.shape or valid.shape != pred.shape:
        raise DojoConfigError(
            f"planner loss: pred {tuple(pred.shape)}, target {tuple(target.shape)} and valid "
            f"{tuple(valid.shape)} must be the same (B, P)."
        )
    if reduction not in ("mean", "sum"):
        raise DojoConfigError(f"planner loss reduction={reduction!r} must be 'mean' or 'sum'.")
    scale = pred.new_tensor(LOSS_SCALE)
    t = torch.where(valid, target, pred.detach())  # a target not asked for: no error, no NaN
    per = F.smooth_l1_loss(pred / scale, t / scale, beta=HUBER_BETA, reduction="none")  # (B, P)
    per_window = (per * valid).mean(dim=1)  # (B,)
    return per_window.mean() if reduction == "mean" else per_window.sum()


def decode(encoded: torch.Tensor | np.ndarray) -> np.ndarray:
    """Encoded targets (B, P) in physical units (gaps [m], closing [m/s], inverse TTC [1/s])."""
    if isinstance(encoded, torch.Tensor):
        encoded = encoded.detach().cpu().double().numpy()
    return decode_targets(encoded)


class PlannerErrors:
    """The planner's errors over many batches: :meth:`add` each, :meth:`summary` once.

    Keeps the decoded predictions and targets (8 numbers a window), so the medians are exact;
    :meth:`merge` pools collectors of several processes.
    """

    def __init__(self) -> None:
        self.pred: list[np.ndarray] = []
        self.true: list[np.ndarray] = []
        self.valid: list[np.ndarray] = []

    def add(self, pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> None:
        """Encoded ``pred`` and ``target`` (B, P), ``valid`` (B, P) of one batch."""
        self.pred.append(decode(pred))
        self.true.append(decode(target))
        self.valid.append(valid.detach().cpu().numpy().astype(bool))

    def state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(pred, true, valid), each (n, P), of every window added."""
        p = len(PLANNER_TARGETS)
        if not self.pred:
            return np.zeros((0, p)), np.zeros((0, p)), np.zeros((0, p), dtype=bool)
        return np.concatenate(self.pred), np.concatenate(self.true), np.concatenate(self.valid)

    def merge(self, states: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
        """Replace the windows by those of ``states`` (every process's :meth:`state`)."""
        self.pred = [s[0] for s in states]
        self.true = [s[1] for s in states]
        self.valid = [s[2] for s in states]

    def summary(self) -> dict[str, float]:
        """Medians (NaN where no window qualifies) and how many windows each is over."""
        pred, true, valid = self.state()
        gap, closing = true[:, LEAD_GAP], true[:, CLOSING]
        lead = valid[:, CLOSING]  # a visible lead within the reach
        within = lead & (gap < GAP_REACH_M)
        near = lead & (gap < CLOSING_RANGE_M)
        rel = np.abs(pred[:, LEAD_GAP] - gap) / np.maximum(gap, 1e-6)
        out = {
            "lead_gap_rel_error_median": _median(rel[within]),
            "lead_gap_windows": float(within.sum()),
            "closing_speed_error_mps_median": _median(np.abs(pred[:, CLOSING] - closing)[near]),
            "closing_speed_windows": float(near.sum()),
            "inv_ttc_error_per_s_median": _median(
                np.abs(pred[:, INV_TTC] - true[:, INV_TTC])[valid[:, INV_TTC]]
            ),
        }
        sides = []
        for i in GAP_TARGETS[1:]:
            ok = valid[:, i] & (true[:, i] < GAP_REACH_M)
            err = np.abs(pred[:, i] - true[:, i])[ok] / np.maximum(true[:, i][ok], 1e-6)
            sides.append(err)
            name = PLANNER_TARGETS[i].removesuffix("_m")
            out[f"{name}_rel_error_median"] = _median(err)
        out["adjacent_gap_rel_error_median"] = _median(np.concatenate(sides))
        return out


def _median(a: np.ndarray) -> float:
    return float(np.median(a)) if len(a) else math.nan


def planner_batch(batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(target (B, P) float, valid (B, P) bool) of a loader batch with auto-labels."""
    if "planner" not in batch:
        raise DojoConfigError(
            "The planner heads learn from auto-labels; this batch has none (labels='telemetry')."
        )
    return batch["planner"].float(), batch["planner_valid"].bool()


__all__ = [
    "CLOSING_RANGE_M",
    "HUBER_BETA",
    "LOSS_SCALE",
    "OFFSET",
    "SPREAD",
    "PlannerErrors",
    "PlannerHead",
    "decode",
    "planner_batch",
    "planner_loss",
]
