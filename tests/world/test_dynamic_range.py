"""The world's dynamic range for reliability (the targets of the world issue).

These are statistical checks on fixed seeds, so they are deterministic; the numbers they
measure are printed in docs/world.md by `dojo world survey`.
"""

import pytest

from dojo.world.scenarios import HAZARD_FAMILIES
from dojo.world.survey import run_episodes


@pytest.mark.slow
@pytest.mark.parametrize("family", HAZARD_FAMILIES)
def test_hazards_catch_a_naive_driver_but_rarely_the_human_model(family):
    seeds = range(1000, 1048)
    naive = run_episodes(family, "naive", seeds, seconds=40.0)
    assert naive.critical_rate >= 0.01, naive
    for driver in ("expert", "human"):  # perfect perception, then with delays and lapses
        human = run_episodes(family, driver, seeds, seconds=40.0)
        assert human.critical_rate * 100 <= naive.critical_rate, (human, naive)
        assert human.collisions == 0, human


@pytest.mark.slow
def test_human_model_drives_a_hundred_thousand_highway_decisions_without_a_collision():
    for driver in ("expert", "human"):
        row = run_episodes("highway", driver, range(2000, 2256), seconds=40.0)
        assert row.decisions >= 100_000
        assert row.collisions == 0, row
