"""The promotion gate: a candidate replaces the deployed model only if it is not less safe.

Two checks, both on evaluations of the same suite:

1. **Overall:** the candidate's lower 95% bound on nines is not below the incumbent's. The lower
   bound, not the point estimate, so a lucky run with few decisions cannot promote a model.
2. **Per family:** no scenario family regresses significantly: for every family where the
   candidate's critical rate is higher, Fisher's exact test (two-sided) must not reject equal
   rates at ``alpha``. A model that is safer on average but worse at cut-ins is refused.

Testing every family at ``alpha`` (no multiplicity correction) makes the gate stricter, which
is the side to err on for a safety gate: a false refusal costs a loop, a false promotion ships
a regression.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dojo.errors import DojoConfigError
from dojo.eval.nines import ALPHA, compare


@dataclass(frozen=True)
class GateDecision:
    promoted: bool
    reasons: list[str] = field(default_factory=list)  # why it was refused (empty when promoted)
    regressions: dict[str, float] = field(
        default_factory=dict
    )  # family -> p-value of a significant regression

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons) if self.reasons else "passed"


def _counts(result: Mapping[str, Any], name: str) -> None:
    for key in ("critical_interventions", "decisions", "nines_low", "families"):
        if key not in result:
            raise DojoConfigError(
                f"The {name} evaluation has no {key!r}; give a result of dojo.eval.evaluate."
            )


def gate(
    candidate: Mapping[str, Any], incumbent: Mapping[str, Any], alpha: float = ALPHA
) -> GateDecision:
    """Whether ``candidate`` may replace ``incumbent`` (both results of :func:`dojo.eval.evaluate`)."""
    _counts(candidate, "candidate")
    _counts(incumbent, "incumbent")
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
    regressions: dict[str, float] = {}
    for fam, inc in incumbent["families"].items():
        cand = candidate["families"].get(fam)
        if cand is None:
            reasons.append(f"family {fam} was not evaluated")
            continue
        test = compare(
            int(cand["critical_interventions"]),
            int(cand["decisions"]),
            int(inc["critical_interventions"]),
            int(inc["decisions"]),
            alpha,
        )
        if test["significant"] and test["better"] == "b":
            regressions[fam] = float(test["p_value"])
            reasons.append(
                f"{fam} regressed: {cand['critical_interventions']} against {inc['critical_interventions']} "
                f"critical (Fisher p = {test['p_value']:.2g})"
            )
    return GateDecision(promoted=not reasons, reasons=reasons, regressions=regressions)


__all__ = ["GateDecision", "gate"]
