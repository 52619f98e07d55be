"""Closed-loop evaluation on held-out suites: baselines, accounting, `dojo eval`, bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from dojo.cli import main
from dojo.errors import DojoConfigError
from dojo.eval.evaluate import compare_results, evaluate, format_eval, load_suites, plan
from dojo.eval.nines import nines
from dojo.world.scenarios import FAMILIES, HELDOUT_SEEDS

KEYS = (
    "decisions",
    "miles",
    "critical_interventions",
    "noncritical_interventions",
    "collisions",
    "miles_per_critical_intervention",
    "nines",
    "nines_low",
    "nines_high",
)


@pytest.fixture(scope="module")
def baselines() -> dict[str, dict[str, Any]]:
    # 2,000 decisions on 4 cars: one whole 40 s drive per car and family (9,600 decisions), ~5 s each
    return {p: evaluate(p, decisions=2_000, cars=4) for p in ("naive", "expert")}


def test_expert_is_safer_than_naive_on_the_heldout_suite(
    baselines: dict[str, dict[str, Any]],
) -> None:
    naive, expert = baselines["naive"], baselines["expert"]
    assert expert["critical_interventions"] < naive["critical_interventions"]
    assert expert["nines_low"] > naive["nines_low"]
    verdict = compare_results(naive, expert)
    assert verdict["significant"] and verdict["better"] == "b"


def test_result_keys_and_accounting(baselines: dict[str, dict[str, Any]]) -> None:
    r = baselines["naive"]
    assert r["policy"] == "naive" and r["suite"] == "heldout"
    assert set(r["families"]) == set(FAMILIES)
    for key in KEYS:
        assert key in r
        for fam in r["families"].values():
            assert key in fam
    for key in ("decisions", "critical_interventions", "noncritical_interventions", "collisions"):
        assert sum(f[key] for f in r["families"].values()) == r[key]
    assert sum(f["miles"] for f in r["families"].values()) == pytest.approx(r["miles"])
    assert (
        r["decisions"] >= 2_000 and r["decisions"] == len(FAMILIES) * 4 * 400
    )  # whole 40 s drives
    if r["critical_interventions"]:
        assert r["nines"] == pytest.approx(
            -math.log10(r["critical_interventions"] / r["decisions"])
        )
        assert r["miles_per_critical_intervention"] == pytest.approx(
            r["miles"] / r["critical_interventions"]
        )
    json.dumps(r, allow_nan=False)  # unbounded values are null, so the JSON is strict


def test_per_drive_counts_add_up_and_the_interval_has_the_drive_as_unit(
    baselines: dict[str, dict[str, Any]],
) -> None:
    r = baselines["naive"]
    assert r["interval_method"] == "korn_graubard_drives"
    assert r["drives"] == sum(f["drives"] for f in r["families"].values())
    for fam in r["families"].values():
        rows = fam["per_drive"]
        assert fam["drives"] == len(rows) >= 4  # at least one drive per car, collisions add more
        assert sum(d["critical_interventions"] for d in rows) == fam["critical_interventions"]
        assert sum(d["decisions"] for d in rows) == fam["decisions"]
        assert all(HELDOUT_SEEDS.start <= d["seed"] < HELDOUT_SEEDS.stop for d in rows)
        assert all(0 < d["decisions"] <= 400 for d in rows)  # a 40 s drive at most
        assert fam["nines_low"] <= fam["nines"] and fam["design_effect"] >= 1.0
    # the naive policy collides: each collision ends its drive, so there are more drives than cars
    assert r["drives"] > len(FAMILIES) * 4
    # no narrower than the old Clopper-Pearson interval over decisions
    assert r["nines_low"] <= nines(r["critical_interventions"], r["decisions"])["nines_low"]


def test_zero_failures_report_a_bound(baselines: dict[str, dict[str, Any]]) -> None:
    e = baselines["expert"]
    if e["critical_interventions"] == 0:
        assert (
            e["nines_is_bound"]
            and e["nines_high"] is None
            and e["miles_per_critical_intervention"] is None
        )
        assert e["nines"] == pytest.approx(-math.log10(3 / e["decisions"]))
    table = format_eval(e)
    assert "overall" in table and all(f in table for f in FAMILIES)


def test_plan_rounds_up_to_whole_drives() -> None:
    assert plan(1, 4) == (4, 400)
    assert plan(1600, 4) == (4, 400)
    assert plan(1601, 4) == (4, 800)


def test_user_suite_from_a_file_and_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lo = HELDOUT_SEEDS.start + 500
    f = tmp_path / "suites.toml"
    f.write_text(f'[suites.stalled_only]\nfamilies = ["stalled"]\nseeds = [{lo}, {lo + 2}]\n')
    assert (
        main(
            [
                "eval",
                "--policy",
                "expert",
                "--suite",
                "stalled_only",
                "--suites-file",
                str(f),
                "--decisions",
                "1",
                "--cars",
                "3",
                "--json",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert list(out["families"]) == ["stalled"] and out["decisions"] == 1_200
    assert out["families"]["stalled"]["seeds_repeated"]  # 3 cars, 2 seeds: said, not hidden
    saved = tmp_path / "expert.json"
    saved.write_text(json.dumps(out))
    assert main(["eval", "--compare", str(saved), str(saved)]) == 0
    assert "not significant" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("kwargs", "toml", "message"),
    [
        ({"suite": "nope"}, None, "Unknown suite 'nope'"),
        ({"policy": "robot"}, None, "Unknown policy 'robot'"),
        ({"policy": "missing/model.pt"}, None, "Checkpoint missing/model.pt does not exist."),
        (
            {"suite": "leaky"},
            "[suites.leaky]\nseeds = [999000, 1000100]\n",
            "overlap the training seed range",
        ),
        (
            {"suite": "train"},
            "[suites.train]\nseeds = [0, 100]\n",
            "overlap the training seed range",
        ),
        (
            {"suite": "far"},
            "[suites.far]\nseeds = [2000000, 2000100]\n",
            "leave the held-out seed range",
        ),
        (
            {"suite": "fam"},
            '[suites.fam]\nfamilies = ["moon"]\nseeds = [1000000, 1000100]\n',
            "unknown scenario family 'moon'",
        ),
        ({"decisions": 0}, None, "decisions=0 must be at least 1."),
    ],
)
def test_bad_input_is_refused_before_driving(
    tmp_path: Path, kwargs: dict[str, Any], toml: str | None, message: str
) -> None:
    args: dict[str, Any] = {"policy": "naive", **kwargs}
    if toml is not None:
        path = tmp_path / "suites.toml"
        path.write_text(toml)
        args["suites_file"] = path
    with pytest.raises(DojoConfigError) as err:
        evaluate(**args)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_builtin_suite_cannot_be_redefined(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text("[suites.heldout]\nseeds = [1000000, 1000010]\n")
    with pytest.raises(DojoConfigError, match="redefines the built-in suite"):
        load_suites(path)


def test_cli_bad_input_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--policy", "naive", "--suite", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dojo: error: Unknown suite 'nope'")
    assert main(["eval"]) == 2
    assert (
        capsys.readouterr().err.strip()
        == "dojo: error: Give --policy naive|expert|careful|CHECKPOINT, or --compare A B."
    )


def test_careful_policy_sees_the_stalled_car_only_with_a_rig_that_shows_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lo = HELDOUT_SEEDS.start
    f = tmp_path / "suites.toml"
    f.write_text(f'[suites.stalled4]\nfamilies = ["stalled"]\nseeds = [{lo}, {lo + 4}]\n')
    critical = {}
    for rig in ("penta", "quad"):
        argv = ["eval", "--policy", "careful", "--suite", "stalled4", "--suites-file", str(f)]
        assert main([*argv, "--decisions", "1", "--cars", "4", "--rig", rig, "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["policy"] == "careful" and out["rig"] == rig and out["decisions"] == 1_600
        critical[rig] = out["critical_interventions"]
    assert critical["penta"] == 0 < critical["quad"]  # the quad rig shows the car too late
