"""Intervals on the critical rate with the drive, not the decision, as the independent unit.

An evaluation is a few dozen drives (scenarios) of a few hundred decisions each, and critical
interventions cluster inside a drive: a hard scenario yields several, an easy one none. The
Clopper-Pearson interval of :mod:`dojo.eval.nines` treats every decision as independent, so
on clustered data it is too narrow (``dojo bench nines`` measures by how much).

**Method: Korn-Graubard** (Korn & Graubard 1998, the interval NCHS uses for survey
proportions). The rate is the ratio estimator p = sum(k_i) / sum(n_i) over drives i with k_i
critical interventions in n_i decisions. Its variance comes from the drives themselves (the
linearised cluster variance, within strata when the drives come from fixed-budget families):

    e_i = k_i - p n_i;   var(p) = sum_h m_h / (m_h - 1) * sum_{i in h} (e_i - mean_h e)^2 / n^2

The design effect deff = var(p) / (p (1 - p) / n) turns the n decisions into an *effective*
sample n* = n / deff with p n* effective failures; a degrees-of-freedom factor
(t_{n-1} / t_{df})^2 with df = drives - strata shrinks n* for the uncertainty of the variance
itself (few drives: wider). The interval is then Clopper-Pearson's beta quantiles at those
(non-integer) effective counts. deff is floored at 1 (as NCHS does): an interval never claims
more than the decisions show, and with one failure per drive at most (a collision ends the
drive; Dojo's naive baseline measures deff 0.2-0.9) it is the plain binomial interval.

**Zero failures.** With no failure the data say nothing about clustering, so the bound is the
rule of three over the effective sample: high = 3 / (n / deff), with deff given by the caller
(:func:`dojo.eval.evaluate` passes the design effect of the whole evaluation to a failure-free
family) or 1 when nothing is known. It is exact for independent decisions and too low when
failures would have clustered; nothing in failure-free data can tell.

**Why not the cluster bootstrap.** Resampling drives (percentile interval) measured lower
coverage at Dojo's sizes: with a few dozen failures in 16-96 drives the bootstrap
distribution of a rare-event rate is too narrow and it has no answer at zero failures (the
coverage table is in docs/eval.md). :func:`cluster_bootstrap` stays for that comparison.

The beta and t quantiles come from ``scipy.stats``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from dojo.errors import ConfigError
from dojo.validate import number

METHOD = "korn_graubard_drives"  # the short name results carry as ``interval_method``


def per_drive_counts(
    failures: Sequence[int] | np.ndarray, decisions: Sequence[int] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(k, n) as int arrays, checked: one entry per drive, 0 <= k_i <= n_i, some decision."""
    k = np.asarray(failures)
    n = np.asarray(decisions)
    if k.ndim != 1 or n.ndim != 1 or len(k) != len(n):
        raise ConfigError(
            f"Per-drive failures and decisions must be two flat lists of one length; "
            f"got shapes {k.shape} and {n.shape}."
        )
    if len(k) == 0:
        raise ConfigError("A clustered interval needs at least one drive; got none.")
    for name, a in (("failures", k), ("decisions", n)):
        if not np.issubdtype(a.dtype, np.integer) or (a < 0).any():
            raise ConfigError(f"Per-drive {name} must be whole numbers >= 0; got {a.tolist()[:8]}.")
    bad = np.nonzero(k > n)[0]
    if len(bad):
        i = int(bad[0])
        raise ConfigError(f"Drive {i} has failures={int(k[i])} above its decisions={int(n[i])}.")
    if int(n.sum()) == 0:
        raise ConfigError("A clustered interval needs at least one decision; the drives have none.")
    return k.astype(np.int64), n.astype(np.int64)


def _strata(strata: Sequence[Any] | None, m: int) -> np.ndarray:
    if strata is None:
        return np.zeros(m, dtype=np.int64)
    if len(strata) != m:
        raise ConfigError(f"strata has {len(strata)} labels for {m} drives; give one per drive.")
    _, codes = np.unique(np.asarray(strata, dtype=str), return_inverse=True)
    return codes.astype(np.int64)


def design_effect(
    failures: Sequence[int] | np.ndarray,
    decisions: Sequence[int] | np.ndarray,
    strata: Sequence[Any] | None = None,
) -> tuple[float | None, int]:
    """(deff, df): the measured design effect of the rate, unfloored, and its degrees of freedom.

    deff is None where it cannot be measured: no failure (or only failures), or no stratum
    with two drives (df = 0).
    """
    k, n = per_drive_counts(failures, decisions)
    codes = _strata(strata, len(k))
    total_k, total_n = int(k.sum()), int(n.sum())
    p = total_k / total_n
    df = len(k) - len(np.unique(codes))
    if total_k == 0 or total_k == total_n or df < 1:
        return None, max(df, 0)
    e = k - p * n
    ss = 0.0
    for h in np.unique(codes):
        eh = e[codes == h]
        if len(eh) > 1:  # a lone drive in its stratum adds no variance estimate
            ss += len(eh) / (len(eh) - 1) * float(((eh - eh.mean()) ** 2).sum())
    var = ss / total_n**2
    return var / (p * (1.0 - p) / total_n), df


def clustered_interval(
    failures: Sequence[int] | np.ndarray,
    decisions: Sequence[int] | np.ndarray,
    confidence: float = 0.95,
    strata: Sequence[Any] | None = None,
    zero_design_effect: float = 1.0,
) -> dict[str, Any]:
    """The Korn-Graubard interval on the critical rate from per-drive counts (module docstring).

    ``strata``: a label per drive (its family) when each stratum had a fixed budget.
    ``zero_design_effect``: the deff the rule of three uses when there is no failure (>= 1).
    Keys: ``rate``, ``low``, ``high``, ``design_effect`` (floored at 1, the one used),
    ``design_effect_measured`` (None when unmeasurable), ``effective_decisions``, ``df``,
    ``drives``, ``interval`` (``korn_graubard`` | ``rule_of_three``).
    """
    k, n = per_drive_counts(failures, decisions)
    conf = number("confidence", confidence, 0.0, 1.0, low_open=True, high_open=True)
    zero_deff = number("zero_design_effect", zero_design_effect, 1.0)
    tail = (1.0 - conf) / 2.0
    total_k, total_n, m = int(k.sum()), int(n.sum()), len(k)
    measured, df = design_effect(k, n, strata)
    p = total_k / total_n
    out: dict[str, Any] = {
        "rate": p,
        "drives": m,
        "df": df,
        "design_effect_measured": measured,
    }
    if total_k == 0:
        n_eff = total_n / zero_deff
        out.update(
            low=0.0,
            high=min(1.0, 3.0 / n_eff),
            design_effect=zero_deff,
            effective_decisions=n_eff,
            interval="rule_of_three",
        )
        return out
    deff = 1.0 if measured is None else max(1.0, measured)
    n_eff = total_n / deff
    if df >= 1:  # the variance is itself estimated from df drives: widen for its uncertainty
        n_eff *= (stats.t.ppf(1.0 - tail, total_n - 1) / stats.t.ppf(1.0 - tail, df)) ** 2
    x = p * n_eff  # effective failures
    low = float(stats.beta.ppf(tail, x, n_eff - x + 1.0))
    high = 1.0 if total_k == total_n else float(stats.beta.ppf(1.0 - tail, x + 1.0, n_eff - x))
    out.update(
        low=low,
        high=high,
        design_effect=deff,
        effective_decisions=n_eff,
        interval="korn_graubard",
    )
    return out


def _neg_log10(p: float) -> float:
    return math.inf if p <= 0.0 else -math.log10(p)


def clustered_nines(
    failures: Sequence[int] | np.ndarray,
    decisions: Sequence[int] | np.ndarray,
    strata: Sequence[Any] | None = None,
    zero_design_effect: float = 1.0,
) -> dict[str, Any]:
    """:func:`dojo.eval.nines.nines`'s keys (``k``, ``n``, ``rate``, ``low``, ``high``,
    ``nines``, ``nines_low``, ``nines_high``, ``nines_is_bound``, ``interval``) from the
    clustered 95% interval, plus its ``drives``, ``design_effect`` and ``effective_decisions``.
    With no failure ``nines`` is the lower bound (``nines_is_bound``), as in ``nines``.
    """
    est = clustered_interval(failures, decisions, 0.95, strata, zero_design_effect)
    k, n = int(np.sum(failures)), int(np.sum(decisions))
    nines_low, nines_high = _neg_log10(est["high"]), _neg_log10(est["low"])
    return {
        **est,
        "k": k,
        "n": n,
        "nines": nines_low if k == 0 else _neg_log10(k / n),
        "nines_low": nines_low,
        "nines_high": nines_high,
        "nines_is_bound": k == 0,
    }


def cluster_bootstrap(
    failures: Sequence[int] | np.ndarray,
    decisions: Sequence[int] | np.ndarray,
    confidence: float = 0.95,
    replicates: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile interval of the rate from resampling whole drives (the comparison method).

    At zero failures every resample is 0, so it reports (0, 3/n), the rule of three.
    """
    k, n = per_drive_counts(failures, decisions)
    conf = number("confidence", confidence, 0.0, 1.0, low_open=True, high_open=True)
    if int(k.sum()) == 0:
        return 0.0, min(1.0, 3.0 / int(n.sum()))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(k), size=(replicates, len(k)))
    boot = k[idx].sum(axis=1) / np.maximum(n[idx].sum(axis=1), 1)
    tail = (1.0 - conf) / 2.0
    low, high = np.quantile(boot, [tail, 1.0 - tail])
    return float(low), float(high)


__all__ = [
    "METHOD",
    "cluster_bootstrap",
    "clustered_interval",
    "clustered_nines",
    "design_effect",
    "per_drive_counts",
]
