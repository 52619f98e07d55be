"""The promotion gate: a candidate replaces the deployed model only if it is not less safe.

Two checks, both on evaluations of the same suite:

1. **Overall:** the candidate's lower 95% bound on nines is not below the incumbent's. The lower
   bound, not the point estimate, so a lucky run with few decisions cannot promote a model. The
   bound is the clustered one of :mod:`dojo.eval.clustered` (the drive is the unit).
2. **Per family:** no scenario family regresses significantly. Each family gets a one-sided
   p-value for "the candidate's critical rate is higher" (only a regression refuses, so the
   whole ``alpha`` goes to that side); the p-values of all families are corrected together by
   **Holm** at ``alpha``. A model that is safer on average but worse at cut-ins is refused.

Why this family test. Critical interventions cluster inside a drive, so Fisher's exact test
on raw counts, which takes every decision as independent, sees differences that are drive
luck. The test here is Fisher's exact test on *design-effect-deflated* counts: k / deff
failures in n / deff decisions, with deff measured from both evaluations' per-drive counts of
that family (each drive's residual about its own model's rate, floored at 1). It stays exact
at the small counts a family has (a few failures in 16 drives, where a test on per-drive rates
has little power and a normal approximation fails), and it is the old test when failures do
not cluster (deff = 1) or a result has no per-drive counts (an older result file).

Why Holm. Six families each tested at 0.05 refuse an unchanged model about six times as often
as one test would; Holm keeps the chance of any false regression at ``alpha`` and is uniformly
more powerful than Bonferroni. (``scipy.stats.false_discovery_control`` is Benjamini-Hochberg,
which bounds a different error, the false share among regressions found.)

**Paired** (``paired=True``): when the candidate and the incumbent drove the same held-out
seeds, each family's test is a Wilcoxon signed-rank test on the per-drive differences in
critical interventions (counts: a drive is one scenario), drives matched by seed (:func:`paired_test`). The same scenario's difficulty
cancels in the difference, so it separates models with fewer drives. A family with too few
matched drives for the test ever to reject (2^-pairs above its Holm level: under 7 pairs of
six families) gets the unpaired test instead. docs/eval.md has the
measured false-refusal rates of the old gate and this one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from dojo.errors import DojoConfigError
from dojo.eval.clustered import design_effect
from dojo.eval.nines import ALPHA
from dojo.validate import number


@dataclass(frozen=True)
class GateDecision:
    promoted: bool
    reasons: list[str] = field(default_factory=list)  # why it was refused (empty when promoted)
    regressions: dict[str, float] = field(
        default_factory=dict
    )  # family -> p-value (uncorrected) of a significant regression after Holm

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons) if self.reasons else "passed"


def _counts(result: Mapping[str, Any], name: str) -> None:
    for key in ("critical_interventions", "decisions", "nines_low", "families"):
        if key not in result:
            raise DojoConfigError(
                f"The {name} evaluation has no {key!r}; give a result of dojo.eval.evaluate."
            )


def holm(p_values: Mapping[str, float], alpha: float = ALPHA) -> list[str]:
    """The hypotheses Holm's step-down procedure rejects at family-wise error ``alpha``.

    Sorted ascending, the j-th smallest (from 0) of m p-values is rejected while every one so
    far is at most alpha / (m - j); the first that is not stops the procedure.
    """
    alpha = number("alpha", alpha, 0.0, 1.0, low_open=True, high_open=True)
    ordered = sorted(p_values.items(), key=lambda kv: kv[1])
    m = len(ordered)
    rejected: list[str] = []
    for j, (name, p) in enumerate(ordered):
        if p > alpha / (m - j):
            break
        rejected.append(name)
    return rejected


def _drives(fam: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    rows = fam.get("per_drive")
    if not rows:
        return None
    k = np.array([int(r["critical_interventions"]) for r in rows], dtype=np.int64)
    n = np.array([int(r["decisions"]) for r in rows], dtype=np.int64)
    return k, n


def deflated_fisher(cand: Mapping[str, Any], inc: Mapping[str, Any]) -> tuple[float, float]:
    """(p, deff): one-sided Fisher p (candidate's rate higher) on counts deflated by the pooled
    design effect of both evaluations' drives of the family."""
    k1, n1 = int(cand["critical_interventions"]), int(cand["decisions"])
    k2, n2 = int(inc["critical_interventions"]), int(inc["decisions"])
    a, b = _drives(cand), _drives(inc)
    deff = 1.0
    if a is not None and b is not None:
        k = np.concatenate([a[0], b[0]])
        n = np.concatenate([a[1], b[1]])
        measured, _ = design_effect(k, n, ["c"] * len(a[0]) + ["i"] * len(b[0]))
        deff = 1.0 if measured is None else max(1.0, measured)

    def shrink(kk: int, nn: int) -> tuple[int, int]:
        ne = max(1, round(nn / deff))
        return min(ne, round(kk / deff)), ne

    (e1, m1), (e2, m2) = shrink(k1, n1), shrink(k2, n2)
    table = [[e1, m1 - e1], [e2, m2 - e2]]
    return float(stats.fisher_exact(table, alternative="greater").pvalue), deff


def paired_test(
    cand_drives: Sequence[Mapping[str, Any]], inc_drives: Sequence[Mapping[str, Any]]
) -> tuple[float, float, int]:
    """(p, mean difference, pairs): one-sided Wilcoxon signed-rank test that the candidate's
    per-drive critical counts are higher than the incumbent's on the same drives.

    Counts, not rates: a drive is one scenario, one chance to fail it, and its length differs
    between the models (a collision ends it, the budget cuts the last one short). As rates the
    last few decisions of a cut drive weigh as much as a whole scenario (one critical in 5
    decisions is 0.2): measured on a loop turn, that refused a candidate with 49 critical
    against the incumbent's 56 for a "regression".

    Drives are matched by ``seed`` (the n-th drive of a seed with the n-th, where seeds
    repeat); unmatched drives (one model reached further through the seed sequence) are left
    out. The difference is candidate minus incumbent, so a positive mean is a regression. No
    pair differing gives p = 1.
    """

    def keyed(rows: Sequence[Mapping[str, Any]]) -> dict[tuple[int, int], float]:
        seen: dict[int, int] = {}
        out = {}
        for r in rows:
            if "seed" not in r:
                raise DojoConfigError(
                    "A paired gate needs per-drive seeds; give results of dojo.eval.evaluate."
                )
            s = int(r["seed"])
            seen[s] = seen.get(s, -1) + 1
            if int(r["decisions"]) > 0:
                out[(s, seen[s])] = float(r["critical_interventions"])
        return out

    a, b = keyed(cand_drives), keyed(inc_drives)
    common = sorted(set(a) & set(b))
    if not common:
        raise DojoConfigError(
            "A paired gate needs both evaluations to drive the same seeds; none are shared."
        )
    d = np.array([a[key] - b[key] for key in common])
    if not np.any(d != 0):
        return 1.0, 0.0, len(common)
    p = float(stats.wilcoxon(d, zero_method="wilcox", alternative="greater").pvalue)
    return p, float(d.mean()), len(common)


def gate(
    candidate: Mapping[str, Any],
    incumbent: Mapping[str, Any],
    alpha: float = ALPHA,
    paired: bool = False,
) -> GateDecision:
    """Whether ``candidate`` may replace ``incumbent`` (both results of :func:`dojo.eval.evaluate`).

    ``paired``: both drove the same seeds; the family test is then :func:`paired_test`.
    """
    _counts(candidate, "candidate")
    _counts(incumbent, "incumbent")
    alpha = number("alpha", alpha, 0.0, 1.0, low_open=True, high_open=True)
    if candidate.get("suite") != incumbent.get("suite"):
        raise DojoConfigError(
            f"The gate compares evaluations of one suite; got {candidate.get('suite')!r} and {incumbent.get('suite')!r}."
        )
    reasons: list[str] = []
    c_low, i_low = float(candidate["nines_low"]), float(incumbent["nines_low"])
    if c_low < i_low:
        digits = 2 if round(c_low, 2) != round(i_low, 2) else 4  # never "2.41 is below 2.41"
        reasons.append(
            f"lower bound on nines {c_low:.{digits}f} is below the deployed model's {i_low:.{digits}f}"
        )
    p_values: dict[str, float] = {}
    notes: dict[str, str] = {}
    for fam, inc in incumbent["families"].items():
        cand = candidate["families"].get(fam)
        if cand is None:
            reasons.append(f"family {fam} was not evaluated")
            continue
        pairs = 0
        if paired:
            p, _, pairs = paired_test(cand.get("per_drive") or [], inc.get("per_drive") or [])
            notes[fam] = f"one-sided Wilcoxon over {pairs} paired drives p = {p:.2g}"
        # with m pairs the signed-rank p is at least 2^-m: too few pairs could never refuse
        # (a few cars, or collisions sending the two models down different seeds), so such a
        # family falls back to the unpaired test rather than pass unexamined
        if not paired or 0.5**pairs > alpha / len(incumbent["families"]):
            p, deff = deflated_fisher(cand, inc)
            notes[fam] = (
                (f"only {pairs} paired drives, so " if paired else "")
                + f"one-sided Fisher p = {p:.2g}"
                + (f", design effect {deff:.2g}" if deff > 1 else "")
            )
        p_values[fam] = p
    regressions: dict[str, float] = {}
    for fam in holm(p_values, alpha) if p_values else []:
        regressions[fam] = p_values[fam]
        cand, inc = candidate["families"][fam], incumbent["families"][fam]
        reasons.append(
            f"{fam} regressed: {cand['critical_interventions']} against {inc['critical_interventions']} "
            f"critical ({notes[fam]}, Holm over {len(p_values)} families)"
        )
    return GateDecision(promoted=not reasons, reasons=reasons, regressions=regressions)


__all__ = ["GateDecision", "deflated_fisher", "gate", "holm", "paired_test"]
