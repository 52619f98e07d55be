"""What each net kind predicts and how it is scored: a batch on the device, the heads' outputs,
and the training loss of one micro-batch.

Net kinds (``TrainConfig.net``) and their heads::

    policy       controls (B, 2)
    occupancy    grid logits (B, K, rows, cols)
    both         controls + grid logits (+ planner targets (B, P) with auto-labels)
    perception   grid logits + planner targets (auto-labels only)

Loss: policy loss + ``occupancy_weight`` x occupancy loss (the weight is 1 for the occupancy net,
whose only loss it is) + ``planner_weight`` x planner loss (:func:`dojo.nets.planner.planner_loss`).
A perception run with ``occupancy_weight`` 0 skips the occupancy decoder (:func:`trains_occupancy`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import torch

from dojo.nets.planner import planner_loss
from dojo.train.loss import policy_loss


class Outputs(NamedTuple):
    """A net's outputs in fp32; None for a head the net does not have."""

    controls: torch.Tensor | None  # (B, 2) [accel m/s^2, lane shift]
    logits: torch.Tensor | None  # (B, K, rows, cols)
    planner: torch.Tensor | None  # (B, P) encoded planner targets


def has_planner(net_config: Mapping[str, Any]) -> bool:
    """Whether a net of this config has the planner heads."""
    return bool(net_config.get("planner", 0))


def to_device(
    batch: Mapping[str, Any], device: torch.device, grids: bool, planner: bool
) -> dict[str, torch.Tensor]:
    """The fields of a loader batch the heads need, on ``device``."""
    nb = device.type == "cuda"
    out = {
        "images": batch["images"].to(device, non_blocking=nb),  # (b, cams, k, H, W) uint8
        "speed_mps": batch["speed_mps"].to(device, non_blocking=nb).float(),  # (b,)
        "command": batch["command"].to(device, non_blocking=nb),  # (b,)
        # the policy's target: [accel m/s^2 the driver applied, lane shift it headed for]
        "action": torch.stack([batch["action"][:, 0], batch["lane_shift"]], dim=1)
        .to(device, non_blocking=nb)
        .float(),  # (b, 2)
    }
    if grids:
        out["occupancy"] = batch["occupancy"].to(device, non_blocking=nb)  # (b, rows, cols) uint8
        out["has_occupancy"] = batch["has_occupancy"].to(device, non_blocking=nb)  # (b,) bool
    if planner:
        out["planner"] = batch["planner"].to(device, non_blocking=nb).float()  # (b, P)
        out["planner_valid"] = batch["planner_valid"].to(device, non_blocking=nb)  # (b, P) bool
    return out


def predict(
    net: Any,
    kind: str,
    x: Mapping[str, torch.Tensor],
    autocast: contextlib.AbstractContextManager[Any],
    occupancy: bool = True,
) -> Outputs:
    """The outputs of a ``kind`` net on batch ``x``, in fp32; ``occupancy`` False skips a
    perception net's occupancy decoder (its logits None)."""
    with autocast:
        if kind == "perception":
            out = net(x["images"], occupancy=occupancy)
        elif kind == "occupancy":
            out = net(x["images"])
        else:
            out = net(x["images"], x["speed_mps"], x["command"])
    parts = out if isinstance(out, tuple) else (out,)
    parts = tuple(None if p is None else p.float() for p in parts)
    if kind == "policy":
        return Outputs(parts[0], None, None)
    if kind == "occupancy":
        return Outputs(None, parts[0], None)
    if kind == "perception":
        return Outputs(None, parts[0], parts[1])
    return Outputs(parts[0], parts[1], parts[2] if len(parts) > 2 else None)


def trains_occupancy(kind: str, occupancy_weight: float) -> bool:
    """Whether a ``kind`` run computes the occupancy head: every net with it, except a
    perception net whose occupancy loss weighs 0 (the planner heads alone)."""
    return kind != "policy" and not (kind == "perception" and occupancy_weight == 0)


def loss(
    out: Outputs,
    x: Mapping[str, torch.Tensor],
    occupancy_loss: Callable[..., torch.Tensor],
    occupancy_weight: float,
    planner_weight: float,
    hazard_weight: float = 1.0,
    underbrake_weight: float = 1.0,
) -> torch.Tensor:
    """The training loss of one micro-batch (see the module doc)."""
    total = torch.zeros((), device=x["images"].device)
    if out.controls is not None:
        total = total + policy_loss(
            out.controls,
            x["action"],
            hazard_weight=hazard_weight,
            underbrake_weight=underbrake_weight,
        )
    if out.logits is not None:
        # weighed against another head's loss; the occupancy net's only loss needs no weight
        weight = occupancy_weight if out.controls is not None or out.planner is not None else 1.0
        total = total + weight * occupancy_loss(out.logits, x["occupancy"], x["has_occupancy"])
    if out.planner is not None:
        total = total + planner_weight * planner_loss(out.planner, x["planner"], x["planner_valid"])
    return total


__all__ = ["Outputs", "has_planner", "loss", "predict", "to_device", "trains_occupancy"]
