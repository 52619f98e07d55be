"""Configuration of ``dojo eval``: which policy, on which suite, for how many decisions.

Each setting is declared once here (default, help, flag); ``dojo eval``'s flags, the loop's
evaluation and the service's eval spec are generated from these fields.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from dojo import validate
from dojo.settings import setting
from dojo.world.rigs import check_rig, rig_setting


@dataclass(frozen=True)
class EvalConfig:
    """One evaluation: ``policy`` drives ``decisions`` decisions (at least) of ``suite``.

    ``decisions`` are split evenly over the suite's families, in whole drives of ``cars`` cars
    per family; ``seed`` is the first scenario seed (None: the suite's first); ``rig``: the
    camera rig the cars carry (the drive's setting, declared once in :mod:`dojo.world.rigs`). The checks that
    need the suite itself (its seeds, its families) run in :func:`dojo.eval.evaluate.evaluate`.
    """

    policy: str | None = setting(
        None,
        help="naive | expert | careful | planner (the planner on perfect perception) | a "
        "checkpoint path | planner:CHECKPOINT (a --net perception checkpoint driving the planner)",
    )
    suite: str = setting(
        "heldout", help="suite name: heldout (every family) or one of --suites-file"
    )
    suites_file: str | None = setting(
        None,
        help="TOML with [suites.NAME] families = [...], seeds = [lo, hi) in the held-out range",
    )
    decisions: int = setting(
        10_000,
        help="at least this many decisions, split evenly over the families, in whole drives",
    )
    cars: int = setting(16, help="cars per fleet (one fleet per family)")
    batch_cars: int = setting(
        0,
        help="on Ray: cars a task (0: baselines over the cluster's CPUs, a checkpoint's fleet "
        "whole; a split checkpoint fleet matches a local run only up to rounding)",
    )
    seed: int | None = setting(None, help="first scenario seed (default: the suite's first)")
    rig: str = rig_setting()

    def __post_init__(self) -> None:
        if self.policy is not None:
            validate.text("policy", self.policy)
        validate.text("suite", self.suite)
        if self.suites_file is not None:
            validate.text("suites_file", self.suites_file)
        validate.whole("decisions", self.decisions)
        validate.whole("cars", self.cars)
        validate.whole("batch_cars", self.batch_cars, 0)
        if self.seed is not None:
            validate.whole("seed", self.seed)
        check_rig(self.rig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


__all__ = ["EvalConfig"]
