"""Calibration: the fit recovers known terms, the packaged file loads, measuring works on 1 and 2 processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dojo.bench.plan import measure_ddp, measure_single, robust_step_s
from dojo.compute.calibration import (
    Calibration,
    Fit,
    Measurement,
    fit,
    leave_one_out,
    load_calibration,
    predict_s,
    save_calibration,
)
from dojo.errors import DojoConfigError

PEAK = 64e9  # [FLOP/s] one core
TRUE = Fit(
    efficiency=0.6,
    step_overhead_s=0.004,
    sample_overhead_s=0.0003,
    update_gbs=5.0,
    allreduce_gbs=0.5,
    allreduce_latency_us=2000.0,
)
NETS = {"tiny": (20.8e6, 166_642), "base": (78.3e6, 661_986), "large": (310.2e6, 3_164_098)}


def _synthetic(noise: float = 0.0) -> list[Measurement]:
    out = []
    k = 0
    for size, (flops, params) in NETS.items():
        for batch in (8, 32):
            for nproc in (1, 2):
                m = Measurement(
                    size=size,
                    batch=batch,
                    nproc=nproc,
                    step_s=1.0,
                    flops_per_sample=flops,
                    params=params,
                )
                wobble = 1.0 + noise * (1 if k % 2 else -1)
                k += 1
                out.append(
                    Measurement(**{**m.__dict__, "step_s": predict_s(m, TRUE, PEAK) * wobble})
                )
    return out


def test_fit_recovers_the_terms_that_made_the_times() -> None:
    got = fit(_synthetic(), PEAK)
    assert got.efficiency == pytest.approx(TRUE.efficiency, rel=1e-6)
    assert got.step_overhead_s == pytest.approx(TRUE.step_overhead_s, rel=1e-6)
    assert got.sample_overhead_s == pytest.approx(TRUE.sample_overhead_s, rel=1e-6)
    assert got.update_gbs == pytest.approx(TRUE.update_gbs, rel=1e-6)
    assert got.allreduce_gbs == pytest.approx(TRUE.allreduce_gbs, rel=1e-6)
    assert got.allreduce_latency_us == pytest.approx(TRUE.allreduce_latency_us, rel=1e-6)


def test_fit_with_noise_predicts_within_the_noise_out_of_sample() -> None:
    ms = _synthetic(noise=0.05)
    for m, held_out in zip(ms, leave_one_out(ms, PEAK), strict=True):
        assert held_out / predict_s(m, TRUE, PEAK) == pytest.approx(1.0, abs=0.2)


def test_fit_needs_enough_different_measurements() -> None:
    ms = _synthetic()
    with pytest.raises(DojoConfigError, match="at least 3"):
        fit(ms[:2], PEAK)
    with pytest.raises(DojoConfigError, match="two net sizes"):
        fit([m for m in ms if m.size == "tiny"], PEAK)


def test_packaged_calibration_is_from_this_kind_of_machine_and_meets_the_target() -> None:
    cal = load_calibration(
        Path(__file__).parents[2] / "src/dojo/compute/specs/cpu-calibration.json"
    )
    assert cal.machine["cores"] >= 2 and cal.fit.efficiency > 0
    nprocs = {m.nproc for m in cal.measurements}
    assert nprocs == {1, 2} and len({(m.size, m.batch) for m in cal.measurements}) >= 3
    peak = cal.peak_tflops_per_core * 1e12
    ratios = [predict_s(m, cal.fit, peak) / m.step_s for m in cal.measurements]
    assert all(0.8 <= r <= 1.2 for r in ratios), ratios


def test_save_and_load_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cal = Calibration(
        machine={"cpu": "x", "cores": 2},
        peak_tflops_per_core=0.05,
        peak_source="s",
        fit=TRUE,
        measurements=tuple(_synthetic()[:3]),
    )
    path = save_calibration(cal, tmp_path / "c.json")
    assert load_calibration(path) == cal
    monkeypatch.setenv("DOJO_CALIBRATION", str(path))
    assert load_calibration() == cal
    (tmp_path / "bad.json").write_text(json.dumps({"machine": {}}))
    with pytest.raises(DojoConfigError, match="expected form"):
        load_calibration(tmp_path / "bad.json")


def test_robust_step_time_ignores_slow_outliers() -> None:
    assert robust_step_s([0.010, 0.011, 0.012, 0.050, 0.400]) == 0.011


@pytest.mark.slow
def test_measuring_one_and_two_processes() -> None:
    single = measure_single("tiny", 4, steps=3)
    two = measure_ddp([("tiny", 4)], nproc=2, steps=3, rounds=2)
    assert set(two) == {("tiny", 4)}
    for t in (single, two[("tiny", 4)]):
        assert t.cpu_s > 0 and t.wall_s > 0
        assert (
            t.cpu_s <= 1.5 * t.wall_s
        )  # one thread: the CPU time a step cannot much exceed its wall time


def test_calibrate_command_measures_fits_and_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The --calibrate plumbing, with the timers replaced by the times TRUE's terms give."""
    import argparse

    from dojo.bench import plan as bench
    from dojo.compute.commands import add_commands
    from dojo.compute.workload import net_workload

    def fake_time(size: str, batch: int, nproc: int) -> bench.Timing:
        w = net_workload("policy", size)
        m = Measurement(
            size=size,
            batch=batch,
            nproc=nproc,
            step_s=1.0,
            flops_per_sample=w.train_flops_per_sample,
            params=w.params,
        )
        t = predict_s(m, TRUE, bench.core_peak()[0])
        return bench.Timing(wall_s=1.5 * t, cpu_s=t)

    monkeypatch.setattr(
        bench, "measure_single", lambda size, batch, steps: fake_time(size, batch, 1)
    )
    monkeypatch.setattr(
        bench,
        "measure_ddp",
        lambda configs, n, steps, rounds=1: {(s, b): fake_time(s, b, n) for s, b in configs},
    )
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    out = tmp_path / "cal.json"
    args = parser.parse_args(["plan", "--calibrate", "--calibration", str(out)])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "held out" in text and f"wrote {out}" in text
    cal = load_calibration(out)
    assert cal.fit.efficiency == pytest.approx(TRUE.efficiency, rel=1e-6)
    assert {(m.nproc, m.size, m.batch) for m in cal.measurements} == {
        (n, s, b) for n in (1, 2) for s in ("tiny", "base", "large") for b in (8, 32)
    }
    assert all(
        m.wall_s == pytest.approx(1.5 * m.cpu_s) and m.step_s == m.cpu_s for m in cal.measurements
    )
