"""How dangerous each scenario family is, for a naive driver and for the human-driver model.

This is the world's dynamic range for reliability: hazard families must put a naive driver
(constant speed, keep lane) in critical situations often, and the human-driver model rarely.
One episode per world; an episode ends at its first ego collision or after ``seconds``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import numpy as np

from dojo.errors import DojoConfigError
from dojo.world.world import DT_S, EgoAction, World


def _human(world: World) -> None:
    return None  # World.step lets the ego's own human driver drive


DRIVERS: dict[str, Callable[[World], EgoAction | None]] = {
    "naive": World.naive_action,  # constant speed, keep lane
    "expert": World.expert_action,  # the human-driver model with perfect perception
    "human": _human,  # the same model with reaction delay and attention lapses
}


@dataclass
class SurveyRow:
    family: str
    driver: str
    episodes: int
    decisions: int
    critical: int  # decisions with TTC under the threshold or a collision
    collisions: int  # episodes that ended in an ego collision

    @property
    def critical_rate(self) -> float:
        return self.critical / max(self.decisions, 1)

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "critical_rate": self.critical_rate}


def run_episodes(
    family: str,
    driver: str,
    seeds: Iterable[int],
    seconds: float,
    on_step: Callable[[], None] | None = None,
) -> SurveyRow:
    """Drive one episode per seed, all worlds in one batch; count decisions and critical ones."""
    if driver not in DRIVERS:
        raise DojoConfigError(f"Unknown driver {driver!r}; choose one of: {', '.join(DRIVERS)}.")
    if not seconds > 0:
        raise DojoConfigError(f"seconds={seconds!r} must be positive.")
    seeds = list(seeds)
    world = World(family, seeds)
    alive = np.ones(len(seeds), dtype=bool)
    decisions = critical = 0
    for _ in range(int(round(seconds / DT_S))):
        result = world.step(DRIVERS[driver](world))
        decisions += int(alive.sum())
        critical += int((result.critical & alive).sum())
        alive &= ~result.ego_collision
        if on_step is not None:
            on_step()
        if not alive.any():
            break
    return SurveyRow(family, driver, len(seeds), decisions, critical, int((~alive).sum()))
