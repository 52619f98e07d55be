"""`dojo bench service` at a small load: both real servers, the schedule kept, no error."""

from __future__ import annotations

import argparse

import pytest

from dojo.bench.service import KINDS, add_bench_command, bench_service, format_result

RATE, SECONDS = 20, 2


def _check_side(side: dict, kinds: tuple[str, ...]) -> None:
    expected = RATE * SECONDS
    assert 0.8 * expected <= side["issued"] <= 1.2 * expected
    assert side["completed"] == side["issued"]
    assert side["errors"] == 0, side["error_samples"]
    assert 0.8 * RATE <= side["issue_rate"] <= 1.2 * RATE
    assert set(side["latency"]) == {"overall", *kinds}
    for kind, p in side["latency"].items():
        assert p["count"] > 0, kind
        assert 0 < p["p50_ms"] <= p["p95_ms"] <= p["p99_ms"] <= p["max_ms"], (kind, p)
    assert sum(side["latency"][k]["count"] for k in kinds) == side["latency"]["overall"]["count"]


def test_bench_service_small_load_on_sqlite() -> None:
    result = bench_service(rate=RATE, seconds=SECONDS, warmup_s=0.25)
    assert {"rate", "seconds", "db", "ours", "floor", "target", "p99_ratio_vs_floor"} <= set(result)
    assert result["db"] == "sqlite" and result["workers"] == 2  # what the benchmark runs by default
    _check_side(result["ours"], KINDS)
    _check_side(result["floor"], ("ping",))
    assert result["p99_ratio_vs_floor"] > 0
    target = result["target"]
    assert target["no_error"] is True and target["at_target_load"] is False
    assert target["met"] == (result["ours"]["latency"]["overall"]["p99_ms"] < 50)
    text = format_result(result)
    assert "p99 ours / floor" in text and "target p99 < 50 ms" in text


def test_bench_service_command_and_bad_arguments() -> None:
    parser = argparse.ArgumentParser()
    add_bench_command(parser.add_subparsers())
    args = parser.parse_args(
        [
            "service",
            "--rate",
            "5",
            "--seconds",
            "1",
            "--db",
            "postgresql://x@127.0.0.1/y",
            "--json",
            "--no-floor",
        ]
    )
    assert (args.rate, args.seconds, args.json, args.no_floor) == (5.0, 1.0, True, True)
    from dojo.errors import DojoConfigError

    with pytest.raises(DojoConfigError):
        bench_service(rate=0, seconds=1)
    with pytest.raises(DojoConfigError):
        bench_service(rate=1, seconds=1, mix={"delete": 1.0})
    with pytest.raises(DojoConfigError):
        bench_service(rate=1, seconds=1, db="mysql://nope")
    with pytest.raises(DojoConfigError, match="workers=0"):
        bench_service(rate=1, seconds=1, workers=0)
