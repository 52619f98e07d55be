"""The occupancy head: the bird's-eye class grid around the ego, from the shared camera tokens.

Data flow, for B cars, C cameras, a grid of R x S cells (``dojo.world.occupancy``: 120 x 80 of
0.5 m by default) and K classes (FREE, VEHICLE, OBSTACLE, NOT_DRIVABLE, EGO)::

    camera tokens (B, C, D)  from the shared CameraBackbone (camera embedding included)
      -> cross-attention from one learned query per coarse BEV cell, (R/8 x S/8) of them,
         to the C camera tokens: (B, R/8 * S/8, D); the query (its place on the grid) is
         added back, so a cell knows both where it is and what the cameras saw
      -> LayerNorm + Linear + ReLU per cell, laid out as a map (B, D, R/8, S/8)
      -> three x2 up-sampling stages (transposed conv 2x2/2, conv 3x3), halving the channels:
         (B, D/8, R, S) (cropped when R or S is not a multiple of 8)
      -> 1x1 conv to class logits (B, K, R, S)

Why this view transform: the cameras' tokens carry no geometry of their own, so the mapping from
"what camera c saw" to "which cell it is in" has to be learned; cross-attention from cell queries
learns it with weights that do not depend on the number of cameras (like the policy's fusion),
and the coarse 1/8 grid keeps the attention small (150 queries for the default grid) while the
conv decoder restores the 0.5 m cells.

The models are plain :class:`torch.nn.Module`\\ s: :class:`OccupancyNet` (``--net occupancy``:
backbone + this head) and :class:`MultiTaskNet` (``--net both``: one backbone feeding the
driving policy and this head). :func:`make_net` builds either, or the policy, by name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from numbers import Integral
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dojo.errors import DojoConfigError
from dojo.nets.policy import (
    SIZES,
    CameraBackbone,
    DrivingPolicy,
    PolicyConfig,
    cross_attention,
)
from dojo.world.occupancy import CLASS_NAMES, NOT_DRIVABLE, OBSTACLE, VEHICLE, OccupancySpec

NET_KINDS = ("policy", "occupancy", "both")
DECODER_STRIDE = 8  # [cells] the attention runs on a grid this much coarser than the output
# The classes the IoU is taken over: space the ego cannot drive into. FREE is the complement,
# and EGO is the ego's own body, drawn at the same cells in every grid: counting it would give
# every network a near-perfect class for free and hide what it actually learned.
OCCUPIED_CLASSES = (VEHICLE, OBSTACLE, NOT_DRIVABLE)
_DEFAULT_GRID = OccupancySpec()


@dataclass(frozen=True)
class OccupancyConfig(PolicyConfig):
    """A :class:`PolicyConfig` (the rig, the size) plus the grid the occupancy head predicts.

    ``rows``, ``cols``: grid cells (row 0 farthest ahead, column 0 farthest left, as in
    :mod:`dojo.world.occupancy`; 120 x 80 by default). ``classes``: K, the number of cell
    classes (5: ``dojo.world.occupancy.CLASS_NAMES``). The same config describes the
    ``occupancy`` and ``both`` nets (``commands`` is unused by the former).
    """

    rows: int = _DEFAULT_GRID.rows
    cols: int = _DEFAULT_GRID.cols
    classes: int = len(CLASS_NAMES)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("rows", "cols", "classes"):
            value = getattr(self, name)
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, Integral) or value < 1:
                raise DojoConfigError(
                    f"Occupancy {name}={value!r} must be a positive whole number."
                )
            object.__setattr__(self, name, int(value))
        if self.classes <= max(OCCUPIED_CLASSES):
            raise DojoConfigError(
                f"Occupancy classes={self.classes} is too few: the grid's classes are "
                f"{', '.join(CLASS_NAMES)} ({len(CLASS_NAMES)})."
            )

    def policy_config(self) -> PolicyConfig:
        """The rig and size alone, for the backbone and the policy head."""
        return PolicyConfig(**{f.name: getattr(self, f.name) for f in fields(PolicyConfig)})


class OccupancyHead(nn.Module):
    """Camera tokens ``(B, C, D)`` -> class logits ``(B, K, rows, cols)``; layers in the module doc."""

    def __init__(self, config: OccupancyConfig) -> None:
        super().__init__()
        if not isinstance(config, OccupancyConfig):
            raise DojoConfigError(
                f"OccupancyHead needs an OccupancyConfig; got {type(config).__name__}."
            )
        self.config = config
        w = SIZES[config.size]
        d = w.token
        self.coarse = (
            math.ceil(config.rows / DECODER_STRIDE),
            math.ceil(config.cols / DECODER_STRIDE),
        )
        self.heads = w.heads
        self.cells = nn.Parameter(torch.randn(self.coarse[0] * self.coarse[1], d) * 0.02)  # (N, D)
        self.q_proj = nn.Linear(d, d)
        self.kv_proj = nn.Linear(d, 2 * d)
        self.out_proj = nn.Linear(d, d)
        self.mix = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d), nn.ReLU(inplace=True))
        stages: list[nn.Module] = []
        c = d
        for _ in range(
            int(math.log2(DECODER_STRIDE))
        ):  # each stage: (B, c, h, w) -> (B, c/2, 2h, 2w)
            stages += [
                nn.ConvTranspose2d(c, c // 2, kernel_size=2, stride=2),
                nn.ReLU(inplace=True),
                nn.Conv2d(c // 2, c // 2, kernel_size=3, padding=1),
                nn.ReLU(inplace=True),
            ]
            c //= 2
        self.decoder = nn.Sequential(*stages)
        self.classify = nn.Conv2d(c, config.classes, kernel_size=1)  # (B, K, 8h, 8w)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, K, rows, cols)`` (unnormalised; argmax over dim 1 is the class)."""
        b, _, d = tokens.shape
        k, v = self.kv_proj(tokens).split(d, dim=-1)  # each (B, C, D)
        seen = cross_attention(self.q_proj(self.cells)[None], k, v, self.heads)  # (B, N, D)
        x = self.mix(
            self.cells + self.out_proj(seen)
        )  # (B, N, D): where the cell is + what is there
        x = x.transpose(1, 2).reshape(b, d, *self.coarse)  # (B, D, R/8, S/8)
        logits = self.classify(self.decoder(x))  # (B, K, 8 * R/8, 8 * S/8)
        return logits[..., : self.config.rows, : self.config.cols]  # (B, K, R, S)


class OccupancyNet(nn.Module):
    """``--net occupancy``: ``images (B, C, k, H, W[, 3]) -> logits (B, K, rows, cols)``.

    The camera backbone of the driving policy (same layers, same names under ``encoder.``) with
    the occupancy head on its tokens; images are checked as :class:`DrivingPolicy` checks them.
    """

    def __init__(self, config: OccupancyConfig) -> None:
        super().__init__()
        if not isinstance(config, OccupancyConfig):
            raise DojoConfigError(
                f"OccupancyNet needs an OccupancyConfig; got {type(config).__name__}."
            )
        self.config = config
        self.encoder = CameraBackbone(config.policy_config())
        self.occupancy = OccupancyHead(config)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, K, rows, cols)`` of the grid around each car."""
        self.encoder.check_images(images, who=type(self).__name__)
        return self.occupancy(self.encoder.encode(images))  # (B, K, rows, cols)


class MultiTaskNet(nn.Module):
    """``--net both``: one backbone, two heads; ``(images, speed_mps, command) -> (controls, logits)``.

    ``controls`` ``(B, 2)`` exactly as :class:`DrivingPolicy` returns them, ``logits``
    ``(B, K, rows, cols)`` as :class:`OccupancyNet`. The backbone is the policy's own
    (``policy`` *is* a complete :class:`DrivingPolicy`), so the policy can be saved and driven
    on its own after multi-task training, with the occupancy head simply left behind.
    """

    def __init__(self, config: OccupancyConfig) -> None:
        super().__init__()
        if not isinstance(config, OccupancyConfig):
            raise DojoConfigError(
                f"MultiTaskNet needs an OccupancyConfig; got {type(config).__name__}."
            )
        self.config = config
        self.policy = DrivingPolicy(config.policy_config())
        self.occupancy = OccupancyHead(config)

    def forward(
        self, images: torch.Tensor, speed_mps: torch.Tensor, command: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(controls (B, 2), logits (B, K, rows, cols))`` from one pass of the backbone."""
        self.policy._check_inputs(images, speed_mps, command)
        tokens = self.policy.encode(images)  # (B, C, D), shared by both heads
        return self.policy.decide(tokens, speed_mps, command), self.occupancy(tokens)


def net_config(kind: str, data: Mapping[str, Any]) -> PolicyConfig:
    """The config of a ``kind`` net from its ``to_dict()`` (PolicyConfig or OccupancyConfig)."""
    if kind not in NET_KINDS:
        raise DojoConfigError(f"net={kind!r} is not known; choose one of: {', '.join(NET_KINDS)}.")
    return PolicyConfig.from_dict(data) if kind == "policy" else OccupancyConfig.from_dict(data)


def make_net(kind: str, config: PolicyConfig | Mapping[str, Any]) -> nn.Module:
    """A fresh ``policy``, ``occupancy`` or ``both`` net for ``config`` (a config or its dict)."""
    if kind not in NET_KINDS:
        raise DojoConfigError(f"net={kind!r} is not known; choose one of: {', '.join(NET_KINDS)}.")
    cfg = net_config(kind, config) if isinstance(config, Mapping) else config
    if kind == "policy":
        return DrivingPolicy(cfg)
    if not isinstance(cfg, OccupancyConfig):
        raise DojoConfigError(f"net={kind!r} needs an OccupancyConfig; got {type(cfg).__name__}.")
    return OccupancyNet(cfg) if kind == "occupancy" else MultiTaskNet(cfg)


# ---------------------------------------------------------------------------- loss and metric
def occupancy_loss(
    logits: torch.Tensor, target: torch.Tensor, labelled: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """Cross-entropy per cell, averaged over the cells of each window, masked by ``labelled``.

    ``logits`` (B, K, R, S) float, ``target`` (B, R, S) class ids, ``labelled`` (B,) bool
    (``has_occupancy``). ``mean``: the sum over labelled windows divided by B, *all* windows,
    so an unlabelled window counts as zero loss rather than changing the divisor: the mean of
    equal-sized micro-batches' losses is then the global batch's, however the batch is split
    over processes and accumulation steps (the trainer's invariant). ``sum``: the plain sum
    over labelled windows (for validation, divided by the labelled count there).
    """
    per_cell = F.cross_entropy(logits, target.long(), reduction="none")  # (B, R, S)
    per_window = per_cell.flatten(1).mean(dim=1) * labelled.to(per_cell.dtype)  # (B,)
    return per_window.sum() / len(per_window) if reduction == "mean" else per_window.sum()


def iou_counts(
    pred: torch.Tensor, target: torch.Tensor, labelled: torch.Tensor | None = None
) -> torch.Tensor:
    """Intersections and unions of each of the OCCUPIED_CLASSES: int64 ``(2, 3)``.

    ``pred``, ``target``: class ids (B, R, S) (``pred`` is ``logits.argmax(1)``); windows with
    ``labelled`` (B,) False are left out. Counts add up across batches and processes (sum, then
    :func:`iou_from_counts`), which is what makes the metric the same however it is split.
    """
    if pred.shape != target.shape:
        raise DojoConfigError(
            f"iou_counts: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ."
        )
    if labelled is not None:
        pred, target = pred[labelled], target[labelled]
    classes = torch.tensor(OCCUPIED_CLASSES, device=pred.device)[
        :, None, None, None
    ]  # (3, 1, 1, 1)
    p, t = pred[None] == classes, target[None] == classes  # (3, B, R, S)
    inter = (p & t).flatten(1).sum(dim=1)  # (3,)
    union = (p | t).flatten(1).sum(dim=1)  # (3,)
    return torch.stack([inter, union]).to(torch.int64)  # (2, 3)


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


def occupancy_iou(
    pred: torch.Tensor, target: torch.Tensor, labelled: torch.Tensor | None = None
) -> float:
    """Mean IoU of the occupied classes of one batch (see :func:`iou_from_counts`)."""
    return iou_from_counts(iou_counts(pred, target, labelled))


__all__ = [
    "DECODER_STRIDE",
    "NET_KINDS",
    "OCCUPIED_CLASSES",
    "iou_per_class",
    "MultiTaskNet",
    "OccupancyConfig",
    "OccupancyHead",
    "OccupancyNet",
    "iou_counts",
    "iou_from_counts",
    "make_net",
    "net_config",
    "occupancy_iou",
    "occupancy_loss",
]
