"""`dojo bench data --parts autolabel` at toy size: the result's shape, never a speed."""

from __future__ import annotations

import json

from dojo.bench.autolabel import TARGET_FRAMES_PER_S, bench_autolabel, format_autolabel


def test_autolabel_bench_labels_every_frame_of_the_store_each_run() -> None:
    said: list[str] = []
    r = bench_autolabel(cars=1, seconds=4.0, repeats=2, log=said.append)
    json.dumps(r)
    assert r["frames"] > 0 and r["grids"] > 0 and said
    assert all(len(runs) == 2 for runs in r["runs_s"].values())
    assert r["autolabel_frames_per_s"] == r["frames"] / min(r["runs_s"]["vectors"])
    assert r["meets_target"] == (r["autolabel_frames_per_s"] >= TARGET_FRAMES_PER_S)
    text = format_autolabel(r)
    assert f"{r['frames']:,} frames" in text and "frames/s" in text
