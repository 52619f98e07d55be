"""Exact intervals and the exact test against closed forms and published values."""

from __future__ import annotations

import math

import pytest

from dojo.errors import DojoConfigError
from dojo.eval.nines import betainc, clopper_pearson, compare, fisher_exact, nines, rule_of_three


def test_betainc_matches_closed_forms() -> None:
    # I_x(1, b) = 1 - (1-x)^b ; I_x(a, 1) = x^a ; I_x(a, b) + I_{1-x}(b, a) = 1
    assert betainc(1, 7, 0.2) == pytest.approx(1 - 0.8**7, rel=1e-12)
    assert betainc(5, 1, 0.7) == pytest.approx(0.7**5, rel=1e-12)
    assert betainc(3.5, 9, 0.3) + betainc(9, 3.5, 0.7) == pytest.approx(1.0, abs=1e-13)
    # binomial tail: P(X >= 2 | n=4, p=0.5) = 11/16 = I_0.5(2, 3)
    assert betainc(2, 3, 0.5) == pytest.approx(11 / 16, rel=1e-12)


def test_zero_failures_upper_bound_is_the_closed_form() -> None:
    low, high = clopper_pearson(0, 10)
    assert low == 0.0
    assert high == pytest.approx(1 - 0.025 ** (1 / 10), rel=1e-12)


def test_all_failures_lower_bound_is_the_closed_form() -> None:
    low, high = clopper_pearson(10, 10)
    assert high == 1.0
    assert low == pytest.approx(0.025 ** (1 / 10), rel=1e-12)


def test_interval_is_symmetric_under_swapping_failures_and_successes() -> None:
    for k, n in ((3, 17), (40, 1000), (1, 2)):
        low, high = clopper_pearson(k, n)
        low2, high2 = clopper_pearson(n - k, n)
        assert low == pytest.approx(1 - high2, abs=1e-12)
        assert high == pytest.approx(1 - low2, abs=1e-12)
    low, high = clopper_pearson(10, 20)
    assert low == pytest.approx(1 - high, abs=1e-12)


def test_textbook_interval() -> None:
    # 5 of 20: [0.0866, 0.4910] (e.g. Agresti & Coull 1998; scipy.stats.binomtest(5, 20).proportion_ci())
    low, high = clopper_pearson(5, 20)
    assert low == pytest.approx(0.0866, abs=5e-5)
    assert high == pytest.approx(0.4910, abs=5e-5)


def test_interval_ends_have_the_defining_tail_probabilities() -> None:
    # high: P(X <= k | high) = 0.025 ; low: P(X >= k | low) = 0.025 (exact binomial sums)
    k, n = 7, 60
    low, high = clopper_pearson(k, n)

    def cdf(p: float, upto: int) -> float:
        return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(upto + 1))

    assert cdf(high, k) == pytest.approx(0.025, rel=1e-9)
    assert 1 - cdf(low, k - 1) == pytest.approx(0.025, rel=1e-9)


def test_zero_failures_report_the_rule_of_three_and_say_so() -> None:
    assert rule_of_three(1000) == 0.003
    assert rule_of_three(2) == 1.0  # capped: a rate cannot exceed 1
    r = nines(0, 300_000)
    assert r["interval"] == "rule_of_three" and r["nines_is_bound"]
    assert r["high"] == pytest.approx(1e-5) and r["high_rule_of_three"] == pytest.approx(1e-5)
    assert r["high_exact"] == pytest.approx(1 - 0.025 ** (1 / 300_000), rel=1e-9)
    assert (
        r["nines"] == r["nines_low"] == pytest.approx(5.0)
    )  # 3 * 10^5 clean decisions show 5 nines
    assert r["nines_high"] == math.inf and r["low"] == 0.0


def test_nines_with_failures() -> None:
    r = nines(10, 10_000)
    assert r["nines"] == pytest.approx(3.0)
    assert r["interval"] == "clopper_pearson" and not r["nines_is_bound"]
    low, high = clopper_pearson(10, 10_000)
    assert r["nines_low"] == pytest.approx(-math.log10(high))
    assert r["nines_high"] == pytest.approx(-math.log10(low))
    assert r["nines_low"] < 3.0 < r["nines_high"]


def test_fisher_exact_lady_tasting_tea() -> None:
    # Fisher's tea tasting: 3 of 4 right, the table [[3, 1], [1, 3]]: two-sided p = 17/35
    assert fisher_exact(3, 4, 1, 4) == pytest.approx(17 / 35, rel=1e-12)
    # the most extreme table [[4, 0], [0, 4]]: p = 2 / C(8, 4)
    assert fisher_exact(4, 4, 0, 4) == pytest.approx(2 / 70, rel=1e-12)


def test_compare_significance() -> None:
    c = compare(0, 1000, 20, 1000)
    assert c["significant"] and c["better"] == "a" and c["alpha"] == 0.05
    # the only tables as extreme: all 20 failures on one side: 2 * C(1000, 20) / C(2000, 20)
    expected = 2 * math.comb(1000, 20) / math.comb(2000, 20)
    assert c["p_value"] == pytest.approx(expected, rel=1e-9)
    c = compare(3, 1000, 4, 1000)
    assert not c["significant"] and c["better"] is None and c["p_value"] > 0.9


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: clopper_pearson(5, 3), "k=5 must not exceed n=3"),
        (lambda: clopper_pearson(-1, 3), "k=-1 must be a whole number >= 0"),
        (lambda: clopper_pearson(1.5, 3), "k=1.5 must be a whole number"),  # type: ignore[arg-type]
        (lambda: nines(0, 0), "n=0: a rate needs at least one decision"),
        (
            lambda: clopper_pearson(1, 3, confidence=1.5),
            "confidence=1.5 must be > 0 and < 1",
        ),
        (lambda: compare(1, 10, 11, 10), "b.k=11 must not exceed b.n=10"),
    ],
)
def test_bad_inputs_raise_one_clear_sentence(call: object, message: str) -> None:
    with pytest.raises(DojoConfigError) as err:
        call()  # type: ignore[operator]
    text = str(err.value)
    assert text.startswith(message) and text.endswith(".") and "\n" not in text


def test_huge_counts_keep_full_precision() -> None:
    """At n = 3e8 the interval still matches closed forms (k = 1: I_x(1, n) = 1 - (1 - x)^n)."""
    n = 300_000_000
    low, _ = clopper_pearson(1, n)
    assert low == pytest.approx(-math.expm1(math.log1p(-0.025) / n), rel=1e-12)
    _, high = clopper_pearson(n - 1, n)
    assert 1.0 - high == pytest.approx(-math.expm1(math.log1p(-0.025) / n), rel=1e-6)
    r = nines(0, n)
    assert r["high"] == 1e-8 and r["nines"] == pytest.approx(8.0)


def test_numpy_counts_are_accepted() -> None:
    np = pytest.importorskip("numpy")
    assert nines(np.int64(3), np.int64(1000)) == nines(3, 1000)
