"""Networks: the shared camera backbone, the driving policy, the occupancy head (torch only)."""

from dojo.nets.checkpoint import load_policy, load_policy_config, load_policy_extra, save_policy
from dojo.nets.flops import count_flops, flops_per_sample, format_table, size_table
from dojo.nets.occupancy import (
    NET_KINDS,
    OCCUPIED_CLASSES,
    MultiTaskNet,
    OccupancyConfig,
    OccupancyHead,
    OccupancyNet,
    iou_counts,
    iou_from_counts,
    iou_per_class,
    make_net,
    occupancy_iou,
    occupancy_loss,
)
from dojo.nets.policy import SIZES, CameraBackbone, DrivingPolicy, PolicyConfig, parameter_count

__all__ = [
    "NET_KINDS",
    "OCCUPIED_CLASSES",
    "SIZES",
    "CameraBackbone",
    "DrivingPolicy",
    "MultiTaskNet",
    "OccupancyConfig",
    "OccupancyHead",
    "OccupancyNet",
    "PolicyConfig",
    "count_flops",
    "flops_per_sample",
    "format_table",
    "iou_counts",
    "iou_from_counts",
    "iou_per_class",
    "load_policy",
    "load_policy_config",
    "load_policy_extra",
    "make_net",
    "occupancy_iou",
    "occupancy_loss",
    "parameter_count",
    "save_policy",
    "size_table",
]
