"""Which held-out moments a candidate fixed or broke against the deployed model.

Each turn evaluates the candidate and the deployed model on the same fresh seeds
(:mod:`dojo.loop.flywheel`), so their drives pair up: the same family, car, drive and scenario
seed. A drive with a critical intervention for the deployed model and none for the candidate
is a moment the candidate *fixed*; the reverse, one it *broke*. The report lists both, so a
person sees what changed between turns and not only by how much.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dojo.errors import DojoConfigError

SHOWN = 20  # moments of each kind a row keeps by name (the counts are all of them)


def _drives(result: Mapping[str, Any], name: str) -> dict[tuple[str, int, int, int], int]:
    """(family, car, drive, seed) -> critical interventions of every drive of ``result``."""
    out: dict[tuple[str, int, int, int], int] = {}
    for fam, r in (result.get("families") or {}).items():
        rows = r.get("per_drive")
        if rows is None:
            raise DojoConfigError(
                f"The {name} evaluation has no per-drive counts (family {fam}); evaluate it "
                "with this Dojo's dojo.eval.evaluate."
            )
        for d in rows:
            key = (str(fam), int(d["car"]), int(d["drive"]), int(d["seed"]))
            out[key] = int(d["critical_interventions"])
    return out


def fixed_and_broken(candidate: Mapping[str, Any], deployed: Mapping[str, Any]) -> dict[str, Any]:
    """``fixed``/``broken``: counts of paired drives; ``fixed_moments``/``broken_moments``: the
    first :data:`SHOWN` of each as ``{family, seed, deployed, candidate}`` (critical counts);
    ``paired``: drives found in both evaluations."""
    cand, dep = _drives(candidate, "candidate"), _drives(deployed, "deployed")
    return _split(
        cand,
        dep,
        lambda key, d, c: {"family": key[0], "seed": key[3], "deployed": d, "candidate": c},
    )


def _split(cand: Mapping[Any, int], dep: Mapping[Any, int], describe: Any) -> dict[str, Any]:
    """Paired keys split into fixed (the deployed model failed, the candidate did not) and
    broken (the reverse); values are failure counts, ``describe(key, d, c)`` names a moment."""
    fixed: list[dict[str, Any]] = []
    broken: list[dict[str, Any]] = []
    both = sorted(set(cand) & set(dep))
    for key in both:
        c, d = cand[key], dep[key]
        if d > 0 and c == 0:
            fixed.append(describe(key, d, c))
        elif c > 0 and d == 0:
            broken.append(describe(key, d, c))
    return {
        "paired": len(both),
        "fixed": len(fixed),
        "broken": len(broken),
        "fixed_moments": fixed[:SHOWN],
        "broken_moments": broken[:SHOWN],
    }


# how the loop's gate treats a candidate that fails fleet moments the deployed model passes
MOMENT_RULES = {
    "net": "refused when it breaks more of the fleet's moments than it fixes, warned when it "
    "breaks some but fixes at least as many",
    "any": "refused when it breaks any of the fleet's moments",
    "warn": "never refused for the fleet's moments, warned when it breaks some",
}


def suite_fixed_and_broken(
    candidate: Mapping[str, Any], deployed: Mapping[str, Any], rule: str = "net"
) -> dict[str, Any]:
    """The regression suite's moments the candidate fixed or broke against the deployed model
    (two ``dojo.eval.suite.evaluate_suite`` results of one suite), and the rule's ``verdict``:
    ``passed``, ``warned`` or ``refused`` (:data:`MOMENT_RULES`)."""
    if rule not in MOMENT_RULES:
        raise DojoConfigError(f"moment rule {rule!r} must be one of {', '.join(MOMENT_RULES)}.")

    def failures(result: Mapping[str, Any]) -> dict[tuple[str, float], int]:
        return {(m["drive"], float(m["t_s"])): int(not m["passed"]) for m in result["moments"]}

    def describe(key: tuple[str, float], d: int, c: int) -> dict[str, Any]:
        return {
            "drive": key[0],
            "t_s": key[1],
            "source": sources.get(key, ""),
            "trigger": triggers.get(key, ""),
        }

    sources = {(m["drive"], float(m["t_s"])): m.get("source", "") for m in candidate["moments"]}
    triggers = {(m["drive"], float(m["t_s"])): m.get("trigger", "") for m in candidate["moments"]}
    out = _split(failures(candidate), failures(deployed), describe)
    fixed, broken = out["fixed"], out["broken"]
    refused = (rule == "net" and broken > fixed) or (rule == "any" and broken > 0)
    out["verdict"] = "refused" if refused else ("warned" if broken else "passed")
    out["rule"] = rule
    out["candidate_passed"] = int(candidate.get("moments_passed", 0))
    out["deployed_passed"] = int(deployed.get("moments_passed", 0))
    return out


__all__ = ["MOMENT_RULES", "SHOWN", "fixed_and_broken", "suite_fixed_and_broken"]
