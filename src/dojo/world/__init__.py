"""The batched traffic world: roads, vehicles, human drivers, hazards, sensors."""

from dojo.world.envs import register_envs
from dojo.world.scenarios import FAMILIES, HAZARD_FAMILIES, HELDOUT_SEEDS, TRAIN_SEEDS, generate
from dojo.world.world import DT_S, Command, MetaAction, StepResult, World

register_envs()  # the dojo/<Family>-v0 gymnasium ids; idempotent

__all__ = [
    "DT_S",
    "FAMILIES",
    "HAZARD_FAMILIES",
    "HELDOUT_SEEDS",
    "TRAIN_SEEDS",
    "Command",
    "MetaAction",
    "StepResult",
    "World",
    "generate",
]
