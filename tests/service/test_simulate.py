"""Discrete-event replay: closed-form checks on small traces, the trace format, the synthetic run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dojo.cli import main
from dojo.compute.topology import parse_system
from dojo.errors import DojoConfigError
from dojo.service.sched.simulate import compare, simulate
from dojo.service.sched.trace import SyntheticSpec, TraceJob, load_trace, synthetic, write_trace


def _jobs(*rows: tuple[str, float, int, float, int]) -> list[TraceJob]:
    return [
        TraceJob(id=i, submit_s=t, tenant="t", chips=c, duration_s=d, priority=p)
        for i, t, c, d, p in rows
    ]


def test_backfill_beats_fifo_by_the_closed_form() -> None:
    # a: 200 of 300 chips for 100 s; b needs the whole cabinet; c (100 chips, 50 s) fits beside a.
    trace = _jobs(("a", 0, 200, 100, 0), ("b", 1, 300, 100, 0), ("c", 2, 100, 50, 0))
    topo = parse_system("cabinet")
    fifo = simulate(trace, topo, "fifo")
    ours = simulate(trace, topo, "ours")
    # FIFO: a 0-100, b 100-200, c 200-250. Ours: c backfills 2-52 and b still starts at 100.
    assert fifo.jct_s == {"a": 100, "b": 199, "c": 248}
    assert ours.jct_s == {"a": 100, "b": 199, "c": 50}
    assert ours.backfilled == 1 and fifo.backfilled == 0
    assert ours.utilization == pytest.approx((200 * 100 + 300 * 100 + 100 * 50) / (300 * 200))
    assert fifo.utilization == pytest.approx((200 * 100 + 300 * 100 + 100 * 50) / (300 * 250))


def test_preemption_keeps_progress() -> None:
    # low runs on the whole cabinet from 0; urgent arrives at 200, preempts it for 100 s;
    # low resumes at 300 with its 200 s done, pays the 10 s restart, ends at 300 + 10 + 800.
    trace = _jobs(("low", 0, 300, 1000, 0), ("urgent", 200, 100, 100, 10))
    ours = simulate(trace, parse_system("cabinet"), "ours", restart_s=10.0)
    assert ours.preemptions == 1
    assert ours.jct_s == {"low": 1110, "urgent": 100}
    fifo = simulate(trace, parse_system("cabinet"), "fifo", restart_s=10.0)
    assert fifo.jct_s == {"low": 1000, "urgent": 900} and fifo.preemptions == 0


def test_avoidable_splits_counted_for_fifo_never_for_ours() -> None:
    # 250 chips of every cabinet busy for 1000 s (500 free, 50 a cabinet), then a 100-chip job:
    # FIFO takes two cabinets, ours waits for one.
    trace = [TraceJob(f"f{k}", 0, "t", 250, 1000.0) for k in range(10)]
    trace += [TraceJob("big", 1, "t", 100, 10.0)]
    topo = parse_system("exapod")
    ours, fifo = simulate(trace, topo, "ours"), simulate(trace, topo, "fifo")
    assert ours.avoidable_splits == 0 and fifo.avoidable_splits == 1
    assert ours.jct_s["big"] == 1009 and fifo.jct_s["big"] == 10


def test_synthetic_trace_shape() -> None:
    jobs = synthetic(SyntheticSpec(jobs=400, seed=3))
    assert len(jobs) == 400 and jobs[0].submit_s == 0
    sizes = [j.chips for j in jobs]
    assert min(sizes) >= 1 and max(sizes) <= 3000
    assert all(c % 25 == 0 for c in sizes if c > 25)
    assert (
        sum(c <= 25 for c in sizes) > 100 and sum(c >= 300 for c in sizes) > 50
    )  # log-uniform spread
    assert synthetic(SyntheticSpec(jobs=400, seed=3)) == jobs


def test_small_synthetic_run_ours_beats_fifo() -> None:
    out = compare(synthetic(SyntheticSpec(jobs=150, seed=1)), parse_system("exapod"))
    assert out["ours"]["avoidable_splits"] == 0
    assert out["ratio"]["mean_jct"] < 0.5


def test_trace_files_round_trip_and_errors(tmp_path: Path) -> None:
    jobs = _jobs(("a", 0, 20, 5, 0), ("b", 1.5, 50, 7, 3))
    for name in ("t.jsonl", "t.csv"):
        write_trace(jobs, tmp_path / name)
        assert load_trace(tmp_path / name) == jobs
    bad = tmp_path / "bad.jsonl"
    for line, msg in (
        ('{"submit_s": 0, "tenant": "a", "chips": 1, "duration_s": 0}', "duration_s=0"),
        ('{"submit_s": 0, "tenant": "a", "duration_s": 1}', "exactly one of chips or tiles"),
        ('{"submit_s": 0, "tenant": "a", "chips": 1, "duration_s": 1, "gpu": 2}', "unknown field"),
        ('{"submit_s": 0, "tenant": "a", "chips": 1.5, "duration_s": 1}', "whole number"),
        ("[1]", "JSON object"),
    ):
        bad.write_text(line + "\n")
        with pytest.raises(DojoConfigError, match="line 1") as e:
            load_trace(bad)
        assert msg in str(e.value)
    tiles = tmp_path / "tiles.jsonl"
    tiles.write_text('{"submit_s": 0, "tenant": "a", "tiles": 4, "duration_s": 1}\n')
    assert load_trace(tiles)[0].chips == 100


def test_command_on_a_trace_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "t.jsonl"
    write_trace(_jobs(("a", 0, 200, 100, 0), ("b", 1, 3000, 100, 0), ("c", 2, 100, 50, 0)), trace)
    png = tmp_path / "u.png"
    assert main(["sched", "simulate", "--trace", str(trace), "--json", "--plot", str(png)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ours"]["mean_jct_s"] < out["fifo"]["mean_jct_s"] and out["ratio"]["mean_jct"] < 1
    assert png.stat().st_size > 10_000
    assert main(["sched", "simulate", "--trace", str(tmp_path / "missing.jsonl")]) == 2
