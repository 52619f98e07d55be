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

The ``spatial`` head (``OccupancyConfig.head``, the default) attends to more than the one token a
camera: the keys are, per camera, the pooled token *and* the 3 x 6 patches of the backbone's
last feature map (each projected to D, plus a learned embedding of its camera and of its patch
position): C * (1 + 18) keys. A car's column in a picture is its bearing and its row its
distance; pooled into one token a camera, that place is largely lost, and the head cannot tell
where on the grid the car is. The ``pooled`` head (the only one before issue 18) attends to the
C camera tokens alone; its weights keep their names, so older checkpoints still load.

Why this view transform: the cameras' tokens carry no geometry of their own, so the mapping from
"what camera c saw" to "which cell it is in" has to be learned; cross-attention from cell queries
learns it with weights that do not depend on the number of cameras (like the policy's fusion),
and the coarse 1/8 grid keeps the attention small (150 queries for the default grid) while the
conv decoder restores the 0.5 m cells.

The models are plain :class:`torch.nn.Module`\\ s: :class:`OccupancyNet` (``--net occupancy``:
backbone + this head), :class:`MultiTaskNet` (``--net both``: one backbone feeding the
driving policy and this head) and :class:`PerceptionNet` (``--net perception``: backbone, this
head and the planner heads of :mod:`dojo.nets.planner`). With ``OccupancyConfig.planner`` set
(auto-labels), ``both`` carries the planner heads too; they attend to the keys this head
attends to (:meth:`OccupancyHead.keys`), computed once. :func:`make_net` builds any of them,
or the policy, by name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from numbers import Integral
from typing import Any

import numpy as np
import torch
from torch import nn

from dojo.errors import DojoConfigError
from dojo.nets.occupancy_losses import occupancy_loss
from dojo.nets.occupancy_metrics import (
    OCCUPIED_CLASSES,
    iou_counts,
    iou_from_counts,
    iou_per_class,
    occupancy_iou,
)
from dojo.nets.options import OCCUPANCY_HEAD, OCCUPANCY_HEADS
from dojo.nets.planner import PlannerHead
from dojo.nets.policy import (
    POOL_GRID,
    SIZES,
    CameraBackbone,
    DrivingPolicy,
    PolicyConfig,
    cross_attention,
)
from dojo.nets.targets import PLANNER_TARGETS
from dojo.world.occupancy import CLASS_NAMES, OccupancySpec

NET_KINDS = ("policy", "occupancy", "both", "perception")
DECODER_STRIDE = 8  # [cells] the attention runs on a grid this much coarser than the output
_DEFAULT_GRID = OccupancySpec()


@dataclass(frozen=True)
class OccupancyConfig(PolicyConfig):
    """A :class:`PolicyConfig` (the rig, the size) plus the grid the occupancy head predicts.

    ``rows``, ``cols``: grid cells (row 0 farthest ahead, column 0 farthest left, as in
    :mod:`dojo.world.occupancy`; 120 x 80 by default). ``classes``: K, the number of cell
    classes (5: ``dojo.world.occupancy.CLASS_NAMES``). The same config describes the
    ``occupancy`` and ``both`` nets (``commands`` is unused by the former). ``head``:
    ``spatial`` (patch tokens) or ``pooled`` (one token a camera), see the module doc.
    ``planner``: the planner targets predicted beside the grid (0: no planner heads; else
    ``len(PLANNER_TARGETS)``, see :mod:`dojo.nets.targets`).
    """

    rows: int = _DEFAULT_GRID.rows
    cols: int = _DEFAULT_GRID.cols
    classes: int = len(CLASS_NAMES)
    head: str = OCCUPANCY_HEAD
    planner: int = 0

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

        if self.planner not in (0, len(PLANNER_TARGETS)) or isinstance(self.planner, bool):
            raise DojoConfigError(
                f"Occupancy planner={self.planner!r} must be 0 (no planner heads) or "
                f"{len(PLANNER_TARGETS)} ({', '.join(PLANNER_TARGETS)})."
            )
        if not isinstance(self.head, str) or self.head not in OCCUPANCY_HEADS:
            raise DojoConfigError(
                f"Occupancy head={self.head!r} is not known; choose one of: "
                f"{', '.join(OCCUPANCY_HEADS)}."
            )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OccupancyConfig:
        """Inverse of :meth:`to_dict`; a dict written before ``head`` existed is a ``pooled`` net,
        one written before ``planner`` existed has no planner heads."""
        if isinstance(data, Mapping) and "head" not in data:
            data = {**data, "head": "pooled"}
        if isinstance(data, Mapping) and "planner" not in data:
            data = {**data, "planner": 0}
        return super().from_dict(data)

    def policy_config(self) -> PolicyConfig:
        """The rig and size alone, for the backbone and the policy head."""
        return PolicyConfig(**{f.name: getattr(self, f.name) for f in fields(PolicyConfig)})


class OccupancyHead(nn.Module):
    """Camera tokens ``(B, C, D)`` (+ feature maps ``(B, C, c3, 3, 6)`` for the ``spatial`` head)
    -> class logits ``(B, K, rows, cols)``; layers in the module doc."""

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
        if config.head == "spatial":  # the patch tokens: where in each picture, which picture
            patches = POOL_GRID[0] * POOL_GRID[1]
            self.patch_proj = nn.Linear(w.convs[2], d)  # (.., c3) -> (.., D)
            self.patch_embedding = nn.Parameter(torch.randn(patches, d) * 0.02)  # (P, D)
            self.camera_embedding = nn.Parameter(torch.randn(config.cameras, d) * 0.02)  # (C, D)
            self.patch_norm = nn.LayerNorm(d)
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

    def keys(self, tokens: torch.Tensor, maps: torch.Tensor | None) -> torch.Tensor:
        """What the cells attend to: the camera tokens (B, C, D), and for the ``spatial`` head
        each camera's patches after them: (B, C * (1 + P), D)."""
        if self.config.head == "pooled":
            return tokens  # (B, C, D)
        if maps is None:
            raise DojoConfigError("The spatial occupancy head needs the backbone's feature maps.")
        b, c = maps.shape[:2]
        patches = self.patch_proj(maps.flatten(3).transpose(2, 3))  # (B, C, P, D)
        patches = patches + self.camera_embedding[:c, None] + self.patch_embedding[None]
        return torch.cat([tokens, self.patch_norm(patches).flatten(1, 2)], dim=1)  # (B, C+C*P, D)

    def forward(self, tokens: torch.Tensor, maps: torch.Tensor | None = None) -> torch.Tensor:
        """Class logits ``(B, K, rows, cols)`` (unnormalised; argmax over dim 1 is the class)
        from camera tokens ``(B, C, D)`` and, for the ``spatial`` head, the backbone's feature
        maps ``(B, C, c3, 3, 6)`` (:meth:`CameraBackbone.encode_features`)."""
        return self.from_keys(self.keys(tokens, maps))

    def from_keys(self, keys: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, K, rows, cols)`` from the keys of :meth:`keys` ``(B, N_keys, D)``."""
        b, _, d = keys.shape
        k, v = self.kv_proj(keys).split(d, dim=-1)  # each (B, N_keys, D)
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
        return self.occupancy(*self.encoder.encode_features(images))  # (B, K, rows, cols)


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
        self.planner = PlannerHead(config.size, config.planner) if config.planner else None

    def forward(
        self, images: torch.Tensor, speed_mps: torch.Tensor, command: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        """``(controls (B, 2), logits (B, K, rows, cols))`` from one pass of the backbone, and
        with the planner heads the encoded planner targets ``(B, P)`` after them."""
        self.policy._check_inputs(images, speed_mps, command)
        tokens, maps = self.policy.encode_features(images)  # (B, C, D), (B, C, c3, 3, 6)
        controls = self.policy.decide(tokens, speed_mps, command)
        keys = self.occupancy.keys(tokens, maps)  # (B, N_keys, D)
        if self.planner is None:
            return controls, self.occupancy.from_keys(keys)
        return controls, self.occupancy.from_keys(keys), self.planner(keys)


class PerceptionNet(OccupancyNet):
    """``--net perception``: ``images -> (logits (B, K, rows, cols), planner (B, P))``.

    The occupancy net (same weights, same names) with the planner heads on the keys its
    occupancy head attends to; learns from auto-labels only (the planner targets are theirs).
    """

    def __init__(self, config: OccupancyConfig) -> None:
        super().__init__(config)
        if not config.planner:
            raise DojoConfigError(
                f"PerceptionNet needs the planner heads: planner={len(PLANNER_TARGETS)}, not 0."
            )
        self.planner = PlannerHead(config.size, config.planner)

    def forward(  # type: ignore[override]
        self, images: torch.Tensor, occupancy: bool = True
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """``(logits (B, K, rows, cols), encoded planner targets (B, P))``; with ``occupancy``
        False the logits are None: the occupancy decoder, most of a training step on CPU, is
        skipped (training the planner heads alone)."""
        self.encoder.check_images(images, who=type(self).__name__)
        keys = self.occupancy.keys(*self.encoder.encode_features(images))  # (B, N_keys, D)
        return (self.occupancy.from_keys(keys) if occupancy else None), self.planner(keys)

    def planner_targets(self, images: torch.Tensor) -> torch.Tensor:
        """The encoded planner targets ``(B, P)`` alone: what a planner drives from, without the
        occupancy decoder (most of the head's work) that it does not read."""
        return self.forward(images, occupancy=False)[1]


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
    if kind == "perception":
        return PerceptionNet(cfg)
    return OccupancyNet(cfg) if kind == "occupancy" else MultiTaskNet(cfg)


__all__ = [
    "DECODER_STRIDE",
    "NET_KINDS",
    "OCCUPIED_CLASSES",
    "MultiTaskNet",
    "OccupancyConfig",
    "OccupancyHead",
    "OccupancyNet",
    "PerceptionNet",
    "iou_counts",
    "iou_from_counts",
    "iou_per_class",
    "make_net",
    "net_config",
    "occupancy_iou",
    "occupancy_loss",
]
