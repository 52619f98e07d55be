"""The moments a candidate fixed or broke, from two paired evaluations."""

from __future__ import annotations

from typing import Any

import pytest

from dojo.errors import DojoConfigError
from dojo.loop.moments import SHOWN, fixed_and_broken, suite_fixed_and_broken


def _eval(per_family: dict[str, list[int]]) -> dict[str, Any]:
    """An evaluation whose drive i of each family (car i, drive 0, seed 100 + i) had k_i critical."""
    return {
        "families": {
            fam: {
                "per_drive": [
                    {
                        "car": i,
                        "drive": 0,
                        "seed": 100 + i,
                        "critical_interventions": k,
                        "decisions": 400,
                    }
                    for i, k in enumerate(ks)
                ]
            }
            for fam, ks in per_family.items()
        }
    }


def test_fixed_and_broken_drives_are_counted_pairwise() -> None:
    deployed = _eval({"stalled": [2, 0, 1, 0], "merge": [0, 0]})
    candidate = _eval({"stalled": [0, 1, 1, 0], "merge": [0, 3]})
    m = fixed_and_broken(candidate, deployed)
    assert (m["paired"], m["fixed"], m["broken"]) == (6, 1, 2)
    assert m["fixed_moments"] == [{"family": "stalled", "seed": 100, "deployed": 2, "candidate": 0}]
    assert {(x["family"], x["seed"]) for x in m["broken_moments"]} == {
        ("stalled", 101),
        ("merge", 101),
    }


def test_only_drives_in_both_evaluations_pair_and_the_lists_are_capped() -> None:
    deployed = _eval({"dense": [1] * (SHOWN + 5)})
    candidate = _eval({"dense": [0] * (SHOWN + 5), "stalled": [4]})  # stalled has no partner
    m = fixed_and_broken(candidate, deployed)
    assert (m["paired"], m["fixed"], m["broken"]) == (SHOWN + 5, SHOWN + 5, 0)
    assert len(m["fixed_moments"]) == SHOWN


def test_an_evaluation_without_per_drive_counts_is_one_clear_error() -> None:
    with pytest.raises(DojoConfigError, match="per-drive counts"):
        fixed_and_broken(
            {"families": {"merge": {"critical_interventions": 1}}}, _eval({"merge": [0]})
        )


def _suite(passed: list[bool]) -> dict[str, Any]:
    """A suite result whose moment i (drive d<i>, t = i s) passed or not."""
    moments = [
        {"drive": f"d{i}", "t_s": float(i), "trigger": "collision", "source": f"log{i}.mcap",
         "passed": p}
        for i, p in enumerate(passed)
    ]  # fmt: skip
    return {"moments": moments, "moments_passed": sum(passed)}


@pytest.mark.parametrize(
    ("deployed", "candidate", "rule", "verdict"),
    [
        ([True, False, False], [True, True, True], "net", "passed"),  # fixed 2, broke none
        ([True, True, False], [False, True, True], "net", "warned"),  # broke 1, fixed 1
        ([True, True, False], [False, False, True], "net", "refused"),  # broke 2, fixed 1
        ([True, True, False], [False, True, True], "any", "refused"),
        ([True, True, True], [False, False, False], "warn", "warned"),
    ],
)
def test_the_moment_rule_refuses_or_warns_as_stated(
    deployed: list[bool], candidate: list[bool], rule: str, verdict: str
) -> None:
    m = suite_fixed_and_broken(_suite(candidate), _suite(deployed), rule)
    assert m["verdict"] == verdict and m["rule"] == rule and m["paired"] == len(deployed)
    broke = [i for i, (d, c) in enumerate(zip(deployed, candidate, strict=True)) if d and not c]
    assert [x["drive"] for x in m["broken_moments"]] == [f"d{i}" for i in broke]
    assert all(x["source"] == f"log{x['drive'][1:]}.mcap" for x in m["broken_moments"])
    assert (m["candidate_passed"], m["deployed_passed"]) == (sum(candidate), sum(deployed))


def test_an_unknown_moment_rule_is_refused() -> None:
    with pytest.raises(DojoConfigError, match="moment rule 'lenient' must be one of"):
        suite_fixed_and_broken(_suite([True]), _suite([True]), "lenient")
