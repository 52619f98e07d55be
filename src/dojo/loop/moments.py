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
    fixed: list[dict[str, Any]] = []
    broken: list[dict[str, Any]] = []
    both = sorted(set(cand) & set(dep))
    for key in both:
        c, d = cand[key], dep[key]
        moment = {"family": key[0], "seed": key[3], "deployed": d, "candidate": c}
        if d > 0 and c == 0:
            fixed.append(moment)
        elif c > 0 and d == 0:
            broken.append(moment)
    return {
        "paired": len(both),
        "fixed": len(fixed),
        "broken": len(broken),
        "fixed_moments": fixed[:SHOWN],
        "broken_moments": broken[:SHOWN],
    }


__all__ = ["SHOWN", "fixed_and_broken"]
