"""Intervals with the drive as the unit: coverage on clustered data, edge cases, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dojo.bench.nines import coverage, drive_length
from dojo.errors import ConfigError
from dojo.eval.clustered import (
    cluster_bootstrap,
    clustered_interval,
    clustered_nines,
    design_effect,
)
from dojo.eval.nines import nines


@pytest.mark.parametrize("shape", [1.0, 0.2])  # design effect ~2 and ~7 at 3e-3, 400 decisions
def test_the_clustered_interval_covers_about_95_percent_of_clustered_evaluations(
    shape: float,
) -> None:
    r = coverage(3e-3, shape, drives=96, drive_decisions=400, trials=1500, seed=7, bootstrap=False)
    assert 0.92 <= r["coverage"]["korn_graubard"] <= 0.98


def test_clopper_pearson_over_decisions_undercovers_strongly_clustered_data() -> None:
    # the interval Dojo reported before: it misses the true rate in about half the evaluations
    r = coverage(3e-3, 0.2, drives=96, drive_decisions=400, trials=1500, seed=7, bootstrap=False)
    assert r["coverage"]["clopper_pearson"] < 0.75


def test_on_independent_decisions_both_cover_and_the_new_interval_is_no_narrower() -> None:
    r = coverage(3e-3, math.inf, trials=800, seed=3, bootstrap=False)
    assert 0.93 <= r["coverage"]["clopper_pearson"] <= 0.97
    assert 0.93 <= r["coverage"]["korn_graubard"] <= 0.99
    k = np.array([0, 1, 0, 1, 0, 1, 0, 0] * 12)  # underdispersed: at most one failure a drive
    n = np.full(len(k), 400)
    new, old = clustered_interval(k, n), nines(int(k.sum()), int(n.sum()))
    assert new["low"] <= old["low"] and new["high"] >= old["high"]
    assert new["design_effect_measured"] < 1.0 and new["design_effect"] == 1.0  # floored
    assert new["drives"] == 96


def test_clustered_failures_widen_the_interval_by_the_design_effect() -> None:
    spread = np.array([1] * 48 + [0] * 48)  # 48 failures, one each in half the drives
    lumped = np.array([12] * 4 + [0] * 92)  # the same 48 in four drives
    n = np.full(96, 400)
    a, b = clustered_interval(spread, n), clustered_interval(lumped, n)
    assert a["rate"] == b["rate"]
    assert b["design_effect"] > 8 * a["design_effect"]
    assert b["high"] - b["low"] > 2.5 * (a["high"] - a["low"])


def test_strata_keep_differences_between_families_out_of_the_design_effect() -> None:
    # two families with different but steady rates: no clustering inside either
    k = np.array([4] * 16 + [0] * 16)
    n = np.full(32, 400)
    pooled, _ = design_effect(k, n)
    stratified, df = design_effect(k, n, ["stalled"] * 16 + ["highway"] * 16)
    assert pooled is not None and pooled > 2 and stratified == pytest.approx(0.0) and df == 30


def test_zero_failures_give_the_rule_of_three_over_the_effective_decisions() -> None:
    k, n = np.zeros(96, dtype=int), np.full(96, 400)
    plain = clustered_nines(k, n)
    assert plain["high"] == pytest.approx(3 / 38_400) and plain["low"] == 0.0
    assert plain["nines_is_bound"] and plain["nines"] == plain["nines_low"]
    assert math.isinf(plain["nines_high"]) and plain["interval"] == "rule_of_three"
    borrowed = clustered_nines(k, n, zero_design_effect=4.0)
    assert borrowed["high"] == pytest.approx(4 * 3 / 38_400)
    assert cluster_bootstrap(k, n) == (0.0, pytest.approx(3 / 38_400))


def test_the_cluster_bootstrap_gives_an_interval_around_the_rate() -> None:
    k = np.array([0, 1, 0, 3, 0, 1, 0, 0] * 12)
    n = np.full(len(k), 400)
    low, high = cluster_bootstrap(k, n, seed=1)
    assert low < k.sum() / n.sum() < high


def test_more_shorter_drives_are_no_wider_at_one_budget() -> None:
    rows = drive_length(3e-3, 0.2, total_decisions=38_400, drive_decisions=(200, 1600), trials=300)
    assert rows[0]["drives"] == 192 and rows[1]["drives"] == 24
    assert rows[0]["median_width_nines"] < rows[1]["median_width_nines"]


@pytest.mark.parametrize(
    ("k", "n", "match"),
    [
        ([], [], "at least one drive"),
        ([0, 0], [0, 0], "at least one decision"),
        ([3], [2], "failures=3 above its decisions=2"),
        ([-1], [4], "whole numbers >= 0"),
        ([0.5], [4], "whole numbers >= 0"),
        ([1, 2], [4], "one length"),
    ],
)
def test_bad_per_drive_counts_are_a_config_error(k: list, n: list, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        clustered_interval(np.array(k, dtype=float if 0.5 in k else int), np.array(n, dtype=int))


def test_bad_options_are_a_config_error() -> None:
    k, n = np.array([1, 0]), np.array([10, 10])
    with pytest.raises(ConfigError, match="strata has 1 labels for 2 drives"):
        clustered_interval(k, n, strata=["a"])
    with pytest.raises(ConfigError, match="zero_design_effect"):
        clustered_interval(k, n, zero_design_effect=0.5)
    with pytest.raises(ConfigError, match="confidence"):
        clustered_interval(k, n, confidence=1.0)
