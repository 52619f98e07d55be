"""The promotion gate: overall lower bound and per-family regressions."""

from __future__ import annotations

from typing import Any

import pytest

from dojo.errors import DojoConfigError
from dojo.eval.nines import nines
from dojo.loop import gate


def result(families: dict[str, tuple[int, int]], suite: str = "heldout") -> dict[str, Any]:
    """An evaluation result with (critical, decisions) per family, totals and nines as evaluate gives."""
    fams = {f: {"critical_interventions": k, "decisions": n} for f, (k, n) in families.items()}
    k = sum(c for c, _ in families.values())
    n = sum(d for _, d in families.values())
    return {
        "suite": suite,
        "critical_interventions": k,
        "decisions": n,
        "nines_low": nines(k, n)["nines_low"],
        "families": fams,
    }


def test_a_clearly_safer_candidate_is_promoted() -> None:
    d = gate(
        result({"highway": (2, 10_000), "cut_in": (5, 10_000)}),
        result({"highway": (30, 10_000), "cut_in": (60, 10_000)}),
    )
    assert d.promoted and d.reasons == [] and d.reason == "passed"


def test_a_lower_bound_below_the_incumbents_is_refused_with_both_bounds() -> None:
    cand, inc = result({"highway": (40, 10_000)}), result({"highway": (20, 10_000)})
    d = gate(cand, inc)
    assert not d.promoted
    assert f"{cand['nines_low']:.2f}" in d.reason and f"{inc['nines_low']:.2f}" in d.reason


def test_a_family_that_regresses_significantly_blocks_promotion_even_when_overall_is_better() -> (
    None
):
    # far fewer critical overall, but cut_in goes from 0 to 25: the gate must name cut_in
    cand = result({"highway": (0, 20_000), "stalled": (0, 20_000), "cut_in": (25, 20_000)})
    inc = result({"highway": (60, 20_000), "stalled": (60, 20_000), "cut_in": (0, 20_000)})
    assert cand["nines_low"] > inc["nines_low"]
    d = gate(cand, inc)
    assert not d.promoted
    assert list(d.regressions) == ["cut_in"] and d.regressions["cut_in"] < 0.05
    assert "cut_in regressed" in d.reason


def test_a_small_insignificant_family_increase_does_not_block() -> None:
    cand = result({"highway": (3, 10_000), "cut_in": (2, 10_000)})
    inc = result({"highway": (30, 10_000), "cut_in": (1, 10_000)})
    d = gate(cand, inc)
    assert d.promoted and d.regressions == {}


def test_equal_results_pass_not_worse_is_enough() -> None:
    r = result({"highway": (10, 10_000)})
    assert gate(r, dict(r)).promoted


def test_a_family_missing_from_the_candidate_is_a_refusal() -> None:
    d = gate(
        result({"highway": (0, 10_000)}), result({"highway": (10, 10_000), "merge": (10, 10_000)})
    )
    assert not d.promoted and "merge was not evaluated" in d.reason


def test_results_of_different_suites_are_an_error() -> None:
    with pytest.raises(DojoConfigError, match="one suite"):
        gate(result({"highway": (1, 100)}, suite="a"), result({"highway": (1, 100)}, suite="b"))


def test_a_result_without_counts_is_an_error_naming_the_key() -> None:
    bad = result({"highway": (1, 100)})
    del bad["families"]
    with pytest.raises(DojoConfigError, match="'families'"):
        gate(bad, result({"highway": (1, 100)}))
