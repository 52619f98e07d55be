"""The fleet-learning loop (``dojo loop``): deploy, log, mine, train, evaluate in nines, gate."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dojo.loop.config import LoopConfig
from dojo.loop.gate import GateDecision, gate  # (a submodule of the same name as the function)

if TYPE_CHECKING:
    from dojo.loop.flywheel import run_loop

# imported on first use: the service's job specs read LoopConfig without loading the trainer
_LAZY = {"run_loop": "dojo.loop.flywheel"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dojo.loop' has no attribute {name!r}")


__all__ = ["GateDecision", "LoopConfig", "gate", "run_loop"]
