"""`dojo bench sandbox` measures real sandboxed and bare runs side by side and states its interval."""

from __future__ import annotations

import pytest

from dojo.bench.sandbox import bench_sandbox, format_sandbox_bench
from dojo.service.agent import sandbox


@pytest.mark.skipif(sandbox.available() is not None, reason="no bubblewrap here")
def test_the_sandbox_bench_pairs_runs_and_gives_an_interval() -> None:
    r = bench_sandbox(steps=15, warmup=5, repeats=2)
    assert len(r["pair_ratios"]) == 2 and all(x > 0 for x in r["pair_ratios"])
    assert r["overhead_low"] <= r["overhead"] <= r["overhead_high"]
    assert r["bare_step_s"] > 0 and r["sandboxed_step_s"] > 0
    assert "95% interval" in format_sandbox_bench(r)
