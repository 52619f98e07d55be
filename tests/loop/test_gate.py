"""The promotion gate: overall lower bound and per-family regressions."""

from __future__ import annotations

from typing import Any

import pytest
from scipy import stats

from dojo.bench.nines import false_refusals
from dojo.errors import DojoConfigError
from dojo.eval.nines import fisher_exact, nines
from dojo.loop import gate
from dojo.loop.gate import holm, paired_test


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


# ----------------------------------------------------------- the drive as the unit, Holm
def drives(counts: list[int], decisions: int = 400, first_seed: int = 0) -> list[dict[str, int]]:
    return [
        {"seed": first_seed + i, "critical_interventions": k, "decisions": decisions}
        for i, k in enumerate(counts)
    ]


def clustered_result(families: dict[str, list[int]]) -> dict[str, Any]:
    """A result with per-drive counts (16 drives of 400 decisions a family, say)."""
    r = result({f: (sum(c), 400 * len(c)) for f, c in families.items()})
    for f, c in families.items():
        r["families"][f]["per_drive"] = drives(c)
    return r


def test_holm_steps_down_and_stops_at_the_first_kept_hypothesis() -> None:
    p = {"a": 0.01, "b": 0.02, "c": 0.03, "d": 0.2}
    assert holm(p, 0.05) == ["a"]  # 0.01 <= 0.05/4, then 0.02 > 0.05/3 stops
    assert holm({"a": 0.001, "b": 0.02}, 0.05) == ["a", "b"]
    assert holm({}, 0.05) == []
    with pytest.raises(DojoConfigError, match="alpha"):
        holm(p, 1.5)


def test_one_borderline_family_among_six_no_longer_refuses() -> None:
    # cut_in: 16 against 5 critical in 6,400 decisions each (p ~ 0.03); five families equal
    fams = {f: (10, 6_400) for f in ("highway", "merge", "lane_drop", "stalled", "dense")}
    cand, inc = result({**fams, "cut_in": (16, 6_400)}), result({**fams, "cut_in": (5, 6_400)})
    inc["nines_low"] = cand["nines_low"]  # the overall rule aside: the family test alone
    p = fisher_exact(16, 6_400, 5, 6_400)
    assert 0.05 / 6 < p < 0.05  # the old gate, every family at 0.05, refused this
    assert gate(cand, inc).promoted


def test_failures_lumped_in_two_drives_are_not_a_regression_but_spread_ones_are() -> None:
    inc = clustered_result({"cut_in": [0, 1] * 8})  # 8 critical, one in every other drive
    lumped = clustered_result({"cut_in": [12, 10] + [0] * 14})  # 22, in two hard scenarios
    spread = clustered_result({"cut_in": [2, 1] * 7 + [1, 1]})  # 23, in every drive
    for cand in (lumped, spread):
        cand["nines_low"] = inc["nines_low"]
    assert fisher_exact(22, 6_400, 8, 6_400) < 0.05  # raw counts: "significant"
    assert gate(lumped, inc).promoted
    refused = gate(spread, inc)
    assert list(refused.regressions) == ["cut_in"] and "Holm over 1 families" in refused.reason


def test_a_paired_gate_sees_a_regression_on_the_same_seeds() -> None:
    inc = clustered_result({"cut_in": [0, 1, 0, 0] * 4})
    worse = clustered_result({"cut_in": [1, 2, 1, 0] * 4})  # one more in 12 of 16 scenarios
    worse["nines_low"] = inc["nines_low"]
    d = gate(worse, inc, paired=True)
    assert not d.promoted and "Wilcoxon over 16 paired drives" in d.reason
    assert gate(inc, dict(inc), paired=True).promoted  # no pair differs: p = 1
    p, diff, pairs = paired_test(
        worse["families"]["cut_in"]["per_drive"], inc["families"]["cut_in"]["per_drive"]
    )
    assert p < 0.01 and diff > 0 and pairs == 16


def test_a_paired_gate_counts_a_cut_short_drive_as_one_scenario_not_by_its_rate() -> None:
    # the incumbent fails 14 whole scenarios (seeds 0-13); the candidate none of them, but on 13
    # other seeds the budget cut its drive after 5 decisions, each with one critical: 13 < 14
    inc = [{"seed": s, "decisions": 400, "critical_interventions": int(s < 14)} for s in range(27)]
    cand = [{"seed": s, "decisions": 400, "critical_interventions": 0} for s in range(14)]
    cand += [{"seed": s, "decisions": 5, "critical_interventions": 1} for s in range(14, 27)]
    as_rates = [
        c["critical_interventions"] / c["decisions"] - i["critical_interventions"] / 400
        for c, i in zip(cand, inc, strict=True)
    ]
    # per-drive rates would call it a regression: the cut drives' 0.2 outrank the 1/400s
    assert stats.wilcoxon(as_rates, alternative="greater").pvalue < 0.05
    p, diff, pairs = paired_test(cand, inc)
    assert pairs == 27 and diff == pytest.approx((13 - 14) / 27) and p > 0.5


def test_a_paired_gate_with_too_few_pairs_to_reject_falls_back_to_the_unpaired_test() -> None:
    # 4 pairs: the signed-rank p is never below 2^-4, above 0.05 - it could never refuse
    inc = clustered_result({"cut_in": [0, 0, 0, 0]})
    worse = clustered_result({"cut_in": [5, 6, 4, 5]})
    worse["nines_low"] = inc["nines_low"]
    d = gate(worse, inc, paired=True)
    assert list(d.regressions) == ["cut_in"]
    assert "only 4 paired drives, so one-sided Fisher" in d.reason


def test_a_paired_gate_needs_shared_seeds() -> None:
    a = clustered_result({"cut_in": [0, 1]})
    b = clustered_result({"cut_in": [0, 1]})
    b["families"]["cut_in"]["per_drive"] = drives([0, 1], first_seed=100)
    with pytest.raises(DojoConfigError, match="same seeds"):
        gate(a, b, paired=True)
    del b["families"]["cut_in"]["per_drive"][0]["seed"]
    with pytest.raises(DojoConfigError, match="per-drive seeds"):
        gate(a, b, paired=True)


def test_the_new_gate_rarely_refuses_an_unchanged_model_where_the_old_often_did() -> None:
    # strongly clustered (design effect ~7): the old family tests refused most equal candidates
    r = false_refusals(3e-3, 0.2, trials=150, seed=5)["refused"]
    assert r["old_families"] > 0.4
    assert r["new_families"] <= 0.05 and r["new_paired_families"] <= 0.05
