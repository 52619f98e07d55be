"""Trainer: imitation learning of the driving policy on one process or many (torchrun, DDP).

The model stays a plain ``nn.Module`` (``dojo.nets``); how it is parallelised lives here.
Names are imported on first use, so ``import dojo.train.launch`` (the CLI) does not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dojo.train.config import DistEnv, Prepared, TrainConfig, prepare
    from dojo.train.trainer import Trainer, policy_loss, train

_WHERE = {
    "DistEnv": "dojo.train.config",
    "Prepared": "dojo.train.config",
    "TrainConfig": "dojo.train.config",
    "prepare": "dojo.train.config",
    "Trainer": "dojo.train.trainer",
    "policy_loss": "dojo.train.trainer",
    "train": "dojo.train.trainer",
}

__all__ = ["DistEnv", "Prepared", "TrainConfig", "Trainer", "policy_loss", "prepare", "train"]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'dojo.train' has no attribute {name!r}")
