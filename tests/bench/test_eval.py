"""`dojo bench eval`: both sides drive the same held-out decisions, and the figures add up."""

from __future__ import annotations

import json

import pytest

from dojo.bench.eval import (
    SIX_NINES_DECISIONS,
    TARGET_DECISIONS_PER_S,
    bench_eval,
    format_eval_bench,
)
from dojo.cli import main
from dojo.errors import DojoConfigError


def test_bench_eval_measures_the_vision_policy_beside_naive_on_the_same_decisions() -> None:
    result = bench_eval(decisions=1000, cars=(1, 2))
    assert [r["cars"] for r in result["rows"]] == [1, 2]
    for row in result["rows"]:
        assert row["naive_decisions"] == row["tiny_decisions"] >= 1000
        assert row["tiny_decisions_per_s"] == pytest.approx(row["tiny_decisions"] / row["tiny_s"])
        worker_s = row["tiny_s"] * result["workers"]  # the workers drive at once
        assert 0 < row["inference_s"] < worker_s
        assert row["world_and_render_s"] == pytest.approx(worker_s - row["inference_s"])
        assert row["inference_share"] == pytest.approx(row["inference_s"] / worker_s)
        assert row["six_nines_minutes"] == pytest.approx(
            SIX_NINES_DECISIONS / row["tiny_decisions_per_s"] / 60
        )
        # rendering the cameras and running a network cannot be cheaper than reading the world
        assert row["tiny_decisions_per_s"] < row["naive_decisions_per_s"]
    best = max(result["rows"], key=lambda r: r["tiny_decisions_per_s"])
    assert result["best_cars"] == best["cars"]
    assert result["ratio_to_target"] == pytest.approx(
        best["tiny_decisions_per_s"] / TARGET_DECISIONS_PER_S
    )
    assert result["meets_target"] == (best["tiny_decisions_per_s"] >= TARGET_DECISIONS_PER_S)
    text = format_eval_bench(result)
    assert (
        "target: tiny network >= 3,000 decisions/s" in text
        and ("NOT met" in text) != result["meets_target"]
    )


def test_bench_eval_cli_json_and_bad_inputs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "eval", "--decisions", "1000", "--cars", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["suite"] == "heldout" and out["device"] == "cpu" and len(out["rows"]) == 1
    with pytest.raises(DojoConfigError, match="decisions=10 "):
        bench_eval(decisions=10)
    with pytest.raises(DojoConfigError, match="cars="):
        bench_eval(decisions=1000, cars=(0,))
