"""The fleet-learning loop (``dojo loop``): deploy, log, mine, train, evaluate in nines, gate."""

from dojo.loop.config import LoopConfig
from dojo.loop.flywheel import run_loop
from dojo.loop.gate import GateDecision, gate

__all__ = ["GateDecision", "LoopConfig", "gate", "run_loop"]
