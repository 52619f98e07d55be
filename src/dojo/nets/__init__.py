"""Networks: the command-conditioned driving policy and its checkpoints (torch only)."""

from dojo.nets.checkpoint import load_policy, load_policy_config, load_policy_extra, save_policy
from dojo.nets.policy import SIZES, DrivingPolicy, PolicyConfig, parameter_count

__all__ = [
    "SIZES",
    "DrivingPolicy",
    "PolicyConfig",
    "load_policy",
    "load_policy_config",
    "load_policy_extra",
    "parameter_count",
    "save_policy",
]
