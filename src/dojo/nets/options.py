"""The occupancy head's and loss's choices, torch-free, so a stage's config can offer them.

The defaults are the design's choice, NOT yet a measured best: at the short CPU budget of
docs/benchmarks.md ("Occupancy: finding the vehicles") no variant predicted a single vehicle
cell, so nothing was separated.
"""

from __future__ import annotations

OCCUPANCY_HEADS = ("pooled", "spatial")  # one token a camera (before issue 18) | patch tokens
OCCUPANCY_HEAD = "spatial"
OCCUPANCY_LOSSES = ("ce", "weighted", "focal")  # see dojo.nets.occupancy_losses
OCCUPANCY_LOSS = "weighted"
RARE_CLASS_WEIGHT = 10.0  # weight of a VEHICLE or OBSTACLE cell in the "weighted" loss
FOCAL_GAMMA = 2.0  # the focusing exponent of the "focal" loss (Lin et al.'s default)

__all__ = [
    "FOCAL_GAMMA",
    "OCCUPANCY_HEAD",
    "OCCUPANCY_HEADS",
    "OCCUPANCY_LOSS",
    "OCCUPANCY_LOSSES",
    "RARE_CLASS_WEIGHT",
]
