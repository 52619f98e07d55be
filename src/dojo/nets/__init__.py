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
from dojo.nets.occupancy_loss import class_weights
from dojo.nets.occupancy_metrics import (
    DISTANCE_BANDS_M,
    band_masks,
    cell_distance_m,
    class_histogram,
    prior_iou_counts,
    region_iou_counts,
    region_ious,
)
from dojo.nets.policy import SIZES, CameraBackbone, DrivingPolicy, PolicyConfig, parameter_count

__all__ = [
    "DISTANCE_BANDS_M",
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
    "load_policy",
    "load_policy_config",
    "load_policy_extra",
    "make_net",
    "occupancy_iou",
    "occupancy_loss",
    "parameter_count",
    "prior_iou_counts",
    "region_iou_counts",
    "region_ious",
    "save_policy",
    "size_table",
]
