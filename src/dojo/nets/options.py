"""The occupancy head's and loss's choices, torch-free, so a stage's config can offer them.

The defaults are the design's choice, NOT yet a measured best: at the short CPU budget of
docs/benchmarks.md ("Occupancy: finding the vehicles") no variant predicted a single vehicle
cell, so nothing was separated.
"""

from __future__ import annotations

# Network sizes, smallest first; their widths are dojo.nets.policy.SIZES. Declared here so the
# torch-free stage configs (dojo train, dojo plan) offer the same names the nets build.
NET_SIZES = ("tiny", "base", "large", "xl")
# The size and camera resolution meant to keep a GPU busy (issue 23; docs/gpu.md): the default
# rig's 48 x 96 px pictures give even xl only 6 GFLOP a training sample, so a GPU would wait on
# the loader's per-window work; at 192 x 384 px (16x the pixels) xl costs 83 GFLOP a sample, and
# the loader then has to deliver ~5,000 windows/s for 40% of an H100, not ~70,000.
GPU_SIZE = "xl"
GPU_IMAGE_PX = (192, 384)  # (height, width) [px] of every camera of the GPU rig

OCCUPANCY_HEADS = ("pooled", "spatial")  # one token a camera (before issue 18) | patch tokens
OCCUPANCY_HEAD = "spatial"
OCCUPANCY_LOSSES = ("ce", "weighted", "focal")  # see dojo.nets.occupancy_losses
OCCUPANCY_LOSS = "weighted"
RARE_CLASS_WEIGHT = 10.0  # weight of a VEHICLE or OBSTACLE cell in the "weighted" loss
FOCAL_GAMMA = 2.0  # the focusing exponent of the "focal" loss (Lin et al.'s default)

__all__ = [
    "FOCAL_GAMMA",
    "GPU_IMAGE_PX",
    "GPU_SIZE",
    "NET_SIZES",
    "OCCUPANCY_HEAD",
    "OCCUPANCY_HEADS",
    "OCCUPANCY_LOSS",
    "OCCUPANCY_LOSSES",
    "RARE_CLASS_WEIGHT",
]
