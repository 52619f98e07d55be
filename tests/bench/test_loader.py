"""`dojo bench data --parts loader` at toy size: both sides measured on the same frames, the report consistent.

Not a timing test: the figures themselves are the benchmark's business (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import statistics

import pytest

from dojo.bench.loader import CONFIGS, TARGET_RATIO, bench_loader, format_loader


def test_loader_bench_pairs_each_run_with_its_raw_run() -> None:
    said: list[str] = []
    result = bench_loader(cars=1, seconds=4.0, repeats=2, log=said.append)
    json.dumps(result)  # JSON-able
    assert result["raw_camera_frames"] > 0 and len(result["raw_camera_frames_per_s_runs"]) == 2
    assert [(c["workers"], c["occupancy"]) for c in result["configs"]] == list(CONFIGS)
    for c in result["configs"]:
        # every configuration decodes exactly the frames the raw side decodes
        assert c["decoded_camera_frames"] == result["raw_camera_frames"] and c["windows"] > 0
        pairs = [
            rate / raw
            for rate, raw in zip(
                c["camera_frames_per_s_runs"], result["raw_camera_frames_per_s_runs"], strict=True
            )
        ]
        assert c["ratio_to_raw_runs"] == pytest.approx(pairs)
        assert c["ratio_to_raw"] == pytest.approx(statistics.median(pairs))
        assert c["ratio_of_bests"] == pytest.approx(
            c["camera_frames_per_s"] / result["raw_camera_frames_per_s"]
        )
    headline = result["configs"][0]
    assert result["ratio_loader_to_raw"] == headline["ratio_to_raw"]
    assert result["meets_target"] == (headline["ratio_to_raw"] >= TARGET_RATIO)
    text = format_loader(result)
    assert (
        f"{headline['ratio_to_raw']:.2f}x raw" in text
        and ("NOT met" in text) != result["meets_target"]
    )
    assert any("raw PyAV" in s for s in said)
