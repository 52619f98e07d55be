"""Networks: the shared camera backbone, the driving policy, the occupancy head (torch only).

Names are loaded on first use (PEP 562), so the torch-free :mod:`dojo.nets.options` can be read
by the stages' configs without importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the real names, for type checkers
    from dojo.nets.checkpoint import load_policy, load_policy_config, load_policy_extra, save_policy
    from dojo.nets.flops import count_flops, flops_per_sample, format_table, size_table
    from dojo.nets.occupancy import (
        NET_KINDS,
        OCCUPIED_CLASSES,
        MultiTaskNet,
        OccupancyConfig,
        OccupancyHead,
        OccupancyNet,
        PerceptionNet,
        iou_counts,
        iou_from_counts,
        iou_per_class,
        make_net,
        occupancy_iou,
        occupancy_loss,
    )
    from dojo.nets.occupancy_losses import class_weights
    from dojo.nets.occupancy_metrics import (
        DISTANCE_BANDS_M,
        band_masks,
        cell_distance_m,
        class_histogram,
        prior_iou_counts,
        region_iou_counts,
        region_ious,
    )
    from dojo.nets.planner import PlannerErrors, PlannerHead, planner_loss
    from dojo.nets.policy import SIZES, CameraBackbone, DrivingPolicy, PolicyConfig, parameter_count

_WHERE = {
    "CameraBackbone": "dojo.nets.policy",
    "DISTANCE_BANDS_M": "dojo.nets.occupancy_metrics",
    "DrivingPolicy": "dojo.nets.policy",
    "MultiTaskNet": "dojo.nets.occupancy",
    "NET_KINDS": "dojo.nets.occupancy",
    "OCCUPIED_CLASSES": "dojo.nets.occupancy",
    "OccupancyConfig": "dojo.nets.occupancy",
    "OccupancyHead": "dojo.nets.occupancy",
    "OccupancyNet": "dojo.nets.occupancy",
    "PerceptionNet": "dojo.nets.occupancy",
    "PlannerErrors": "dojo.nets.planner",
    "PlannerHead": "dojo.nets.planner",
    "planner_loss": "dojo.nets.planner",
    "PolicyConfig": "dojo.nets.policy",
    "SIZES": "dojo.nets.policy",
    "band_masks": "dojo.nets.occupancy_metrics",
    "cell_distance_m": "dojo.nets.occupancy_metrics",
    "class_histogram": "dojo.nets.occupancy_metrics",
    "class_weights": "dojo.nets.occupancy_losses",
    "count_flops": "dojo.nets.flops",
    "flops_per_sample": "dojo.nets.flops",
    "format_table": "dojo.nets.flops",
    "iou_counts": "dojo.nets.occupancy",
    "iou_from_counts": "dojo.nets.occupancy",
    "iou_per_class": "dojo.nets.occupancy",
    "load_net": "dojo.nets.checkpoint",
    "load_net_config": "dojo.nets.checkpoint",
    "load_policy": "dojo.nets.checkpoint",
    "load_policy_config": "dojo.nets.checkpoint",
    "load_policy_extra": "dojo.nets.checkpoint",
    "make_net": "dojo.nets.occupancy",
    "occupancy_iou": "dojo.nets.occupancy",
    "occupancy_loss": "dojo.nets.occupancy",
    "parameter_count": "dojo.nets.policy",
    "prior_iou_counts": "dojo.nets.occupancy_metrics",
    "region_iou_counts": "dojo.nets.occupancy_metrics",
    "region_ious": "dojo.nets.occupancy_metrics",
    "save_policy": "dojo.nets.checkpoint",
    "size_table": "dojo.nets.flops",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'dojo.nets' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)


__all__ = [
    "CameraBackbone",
    "DISTANCE_BANDS_M",
    "DrivingPolicy",
    "MultiTaskNet",
    "NET_KINDS",
    "OCCUPIED_CLASSES",
    "OccupancyConfig",
    "OccupancyHead",
    "OccupancyNet",
    "PerceptionNet",
    "PlannerErrors",
    "PlannerHead",
    "PolicyConfig",
    "SIZES",
    "band_masks",
    "cell_distance_m",
    "class_histogram",
    "class_weights",
    "count_flops",
    "flops_per_sample",
    "format_table",
    "iou_counts",
    "iou_from_counts",
    "iou_per_class",
    "load_net",
    "load_net_config",
    "load_policy",
    "load_policy_config",
    "load_policy_extra",
    "make_net",
    "occupancy_iou",
    "occupancy_loss",
    "parameter_count",
    "planner_loss",
    "prior_iou_counts",
    "region_iou_counts",
    "region_ious",
    "save_policy",
    "size_table",
]
