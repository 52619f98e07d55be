"""Reliability in nines, with exact intervals and an exact test between two policies.

DESIGN.md: reliability is 1 - critical/decisions and nines = -log10(critical/decisions). A rate
estimated from a few failures is very uncertain, so every figure carries an exact 95%
Clopper-Pearson interval; with zero failures the upper bound is the rule of three (3/n), the
one-sided 95% bound that makes "k nines need about 3*10^k clean decisions" literal.

The beta quantiles behind the interval and Fisher's exact test come from ``scipy.stats``, a
well-kept implementation, rather than code of our own; this module decides what is reported
(the edge cases, the rule of three, the names of the keys).

These treat every decision as independent. An evaluation's failures cluster inside drives, so
:func:`dojo.eval.evaluate` reports the intervals of :mod:`dojo.eval.clustered` instead, with
the drive as the unit; :func:`nines` stays for counts without per-drive detail.
"""

from __future__ import annotations

import math
from typing import Any

from scipy import special, stats

from dojo.errors import ConfigError
from dojo.validate import number, whole

ALPHA = 0.05  # significance level of :func:`compare` and the default interval's 1 - confidence


# ------------------------------------------------------------------------- input checks
def _check(k: object, n: object, what: str = "") -> tuple[int, int]:
    kk, nn = whole(f"{what}k", k, 0), whole(f"{what}n", n, 0)
    if nn == 0:
        raise ConfigError(f"{what}n=0: a rate needs at least one decision.")
    if kk > nn:
        raise ConfigError(f"{what}k={kk} must not exceed {what}n={nn} (failures out of decisions).")
    return kk, nn


def _check_share(name: str, value: object) -> float:
    return number(name, value, 0.0, 1.0, low_open=True, high_open=True)


# --------------------------------------------------------------- incomplete beta function
def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    return float(special.betainc(a, b, min(1.0, max(0.0, x))))


def beta_ppf(q: float, a: float, b: float) -> float:
    """The x with I_x(a, b) = q: the q-quantile of the Beta(a, b) distribution."""
    return float(stats.beta.ppf(q, a, b))


# ------------------------------------------------------------------------------ intervals
def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact two-sided interval for a binomial proportion from k failures in n trials.

    low is the rate at which seeing k or more failures has probability (1 - confidence)/2, high
    the rate at which seeing k or fewer has that probability; via the beta distribution,
    low = Beta^-1((1-c)/2; k, n-k+1) and high = Beta^-1((1+c)/2; k+1, n-k). At k = 0 this gives
    high = 1 - ((1-c)/2)^(1/n) (about 3.69/n at 95%); :func:`nines` reports the rule of three
    there instead, see :func:`rule_of_three`.
    """
    k, n = _check(k, n)
    tail = (1.0 - _check_share("confidence", confidence)) / 2.0
    low = 0.0 if k == 0 else beta_ppf(tail, k, n - k + 1)
    high = 1.0 if k == n else beta_ppf(1.0 - tail, k + 1, n - k)
    # the closed forms at the edges, exact rather than bisected
    if k == 0:
        high = -math.expm1(math.log(tail) / n)
    if k == n:
        low = math.exp(math.log(tail) / n)
    return low, high


def rule_of_three(n: int) -> float:
    """Upper 95% bound on a rate after n failure-free trials: 3/n (capped at 1).

    It approximates the exact one-sided bound 1 - 0.05^(1/n) (= -ln(0.05)/n = 2.996/n for large
    n) and is what DESIGN.md quotes: showing k nines takes about 3 * 10^k clean decisions.
    """
    _, n = _check(0, n)
    return min(1.0, 3.0 / n)


def _neg_log10(p: float) -> float:
    return math.inf if p <= 0.0 else -math.log10(p)


def nines(k: int, n: int) -> dict[str, Any]:
    """Nines of reliability from k critical failures in n decisions, with a 95% interval.

    Keys: ``rate`` (k/n), ``low`` and ``high`` (the reported 95% interval on the rate),
    ``high_exact`` (the Clopper-Pearson upper bound), ``high_rule_of_three`` (3/n, or None when
    k > 0), ``interval`` ("clopper_pearson", or "rule_of_three" when k = 0, where the reported
    high is 3/n), ``nines`` (-log10(rate)), ``nines_low`` (-log10(high)), ``nines_high``
    (-log10(low), inf when low = 0) and ``nines_is_bound``. With k = 0 the point estimate is
    infinite, so ``nines`` reports ``nines_low`` instead and ``nines_is_bound`` is True: the data
    show at least that many nines, not exactly that many.
    """
    k, n = _check(k, n)
    low, high_exact = clopper_pearson(k, n)
    r3 = rule_of_three(n) if k == 0 else None
    high = r3 if r3 is not None else high_exact
    nines_low, nines_high = _neg_log10(high), _neg_log10(low)
    point = _neg_log10(k / n)
    return {
        "k": k,
        "n": n,
        "rate": k / n,
        "low": low,
        "high": high,
        "high_exact": high_exact,
        "high_rule_of_three": r3,
        "interval": "rule_of_three" if k == 0 else "clopper_pearson",
        "nines": nines_low if k == 0 else point,
        "nines_low": nines_low,
        "nines_high": nines_high,
        "nines_is_bound": k == 0,
    }


# ------------------------------------------------------------------------------ the test
def fisher_exact(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided p-value of Fisher's exact test on the table [[k1, n1-k1], [k2, n2-k2]].

    Given the k1 + k2 failures in all, the first group's count is hypergeometric under the null
    hypothesis of one common rate. The p-value sums the probabilities of every split no more
    likely than the one observed (the usual two-sided definition, which ``scipy.stats`` uses).
    """
    table = [[k1, n1 - k1], [k2, n2 - k2]]
    p = stats.fisher_exact(table, alternative="two-sided").pvalue
    return min(1.0, float(p))


def compare(k1: int, n1: int, k2: int, n2: int, alpha: float = ALPHA) -> dict[str, Any]:
    """Whether two critical rates (k1/n1 against k2/n2) differ significantly.

    Fisher's exact test: exact at any count, including zero failures, where normal
    approximations fail. ``significant`` is p < ``alpha``; ``better`` names the side with the
    lower rate when the difference is significant ("a", "b"), else None.
    """
    k1, n1 = _check(k1, n1, "a.")
    k2, n2 = _check(k2, n2, "b.")
    alpha = _check_share("alpha", alpha)
    p = fisher_exact(k1, n1, k2, n2)
    significant = p < alpha
    rate_a, rate_b = k1 / n1, k2 / n2
    better = None if not significant else ("a" if rate_a < rate_b else "b")
    return {
        "a": {"critical": k1, "decisions": n1, "rate": rate_a},
        "b": {"critical": k2, "decisions": n2, "rate": rate_b},
        "test": "fisher_exact_two_sided",
        "p_value": p,
        "alpha": alpha,
        "significant": significant,
        "better": better,
    }
