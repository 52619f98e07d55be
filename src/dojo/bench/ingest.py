"""The ingest part of `dojo bench data`: camera frames ingested per second beside MCAP reading alone.

One run: a fleet drives with full logging into a temporary folder (not timed); then, on those
same files, (1) the official ``mcap`` reader iterates every message in one process, the floor
any MCAP ingest stands on, and (2) :func:`dojo.data.ingest.ingest` builds a fresh clip store
with one worker per core. Each side runs ``repeats`` times and the fastest run counts.
Target (issue 4): at least :data:`TARGET_FRAMES_PER_S` camera frames a second on 2 cores.
With ``ray``, (3) the same ingest as Ray tasks, a file a task, on the cluster at that address:
``ray_overhead`` is the share of local frames/s lost (issue 21: at most 10 %).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from mcap.reader import make_reader

from dojo.bench.machine import machine_info
from dojo.data.ingest import ingest
from dojo.fleet.config import DriveConfig
from dojo.fleet.drive import Fleet
from dojo.validate import positive, whole

TARGET_FRAMES_PER_S = 10_000.0


def make_logs(
    folder: Path,
    cars: int,
    seconds: float,
    seed: int = 0,
    image_px: tuple[int, int] | None = None,
) -> list[Path]:
    """Drive ``cars`` cars for ``seconds`` each (mixed modes, full logging) into ``folder``.

    ``image_px``: (height, width) of every camera [px]; the drive's default when None.
    """
    config = DriveConfig(
        cars=cars, minutes=seconds / 60.0, mode="mixed", policy="naive", out=str(folder), seed=seed
    )
    if image_px is not None:
        config = replace(config, camera_height=image_px[0], camera_width=image_px[1])
    summary = Fleet(config).run()
    if summary.interrupted:
        raise KeyboardInterrupt
    return sorted(Path(f) for f in summary.files)


def read_all_messages(files: list[Path]) -> tuple[float, int]:
    """(seconds, messages): every message of every file through the official mcap reader."""
    count = 0
    start = time.perf_counter()
    for path in files:
        with open(path, "rb") as f:
            for _ in make_reader(f).iter_messages(log_time_order=False):
                count += 1
    return time.perf_counter() - start, count


def bench_ingest(
    cars: int = 8,
    seconds: float = 120.0,
    repeats: int = 3,
    workers: int | None = None,
    log: Callable[[str], None] | None = None,
    ray: str | None = None,
) -> dict[str, Any]:
    """Measure ingest against plain MCAP reading on the same logs; a JSON-able result."""
    cars, seconds = whole("cars", cars, 1), positive("seconds", seconds)
    repeats = whole("repeats", repeats, 1)
    say = log or (lambda _: None)
    with tempfile.TemporaryDirectory(prefix="dojo-bench-ingest-") as tmp:
        root = Path(tmp)
        say(f"driving {cars} cars x {seconds:g} s with full logging (not timed) ...")
        files = make_logs(root / "logs", cars, seconds)
        size = sum(f.stat().st_size for f in files)
        if ray is not None:
            from dojo.cluster import cluster_cpus

            cluster_cpus(ray)  # connect before anything is timed
        read_runs, ingest_runs, ray_runs = [], [], []
        messages = frames = clips = 0
        used = 1
        for k in range(repeats):
            say(f"run {k + 1}/{repeats}: mcap reader alone ...")
            read_s, messages = read_all_messages(files)
            read_runs.append(read_s)
            store = root / f"store{k}"
            say(f"run {k + 1}/{repeats}: dojo ingest ...")
            summary = ingest(files, store, workers=workers)
            if summary.files_ingested != len(files):
                raise RuntimeError(
                    f"ingest took {summary.files_ingested} of {len(files)} files: {summary.quarantined}"
                )
            ingest_runs.append(summary.wall_s)
            frames, clips, used = summary.frames, summary.clips, summary.workers
            shutil.rmtree(store)
            if ray is not None:
                say(f"run {k + 1}/{repeats}: dojo ingest on Ray at {ray} ...")
                on_ray = ingest(files, store, ray=ray)
                if (on_ray.files_ingested, on_ray.frames) != (len(files), frames):
                    raise RuntimeError(f"ingest on Ray took {on_ray.files_ingested} files")
                ray_runs.append(on_ray.wall_s)
                shutil.rmtree(store)
    best_read, best_ingest = min(read_runs), min(ingest_runs)
    ingest_fps = frames / best_ingest
    out: dict[str, Any] = {
        "machine": machine_info(),
        "cores": os.cpu_count(),
        "files": len(files),
        "bytes": size,
        "messages": messages,
        "camera_frames": frames,
        "clips": clips,
        "workers": used,
        "mcap_read_s_runs": read_runs,
        "ingest_s_runs": ingest_runs,
        "mcap_read_messages_per_s": messages / best_read,
        "ingest_messages_per_s": messages / best_ingest,
        "ingest_camera_frames_per_s": ingest_fps,
        "ratio_ingest_to_mcap_read_time": best_ingest / best_read,
        "target_camera_frames_per_s": TARGET_FRAMES_PER_S,
        "meets_target": bool(ingest_fps >= TARGET_FRAMES_PER_S),
    }
    if ray is not None:
        ray_fps = frames / min(ray_runs)
        out.update(
            ray=ray,
            ray_s_runs=ray_runs,
            ray_camera_frames_per_s=ray_fps,
            ray_overhead=1.0 - ray_fps / ingest_fps,
            target_ray_overhead=0.10,
        )
    return out


def format_ingest(result: dict[str, Any]) -> str:
    r = result
    verdict = "met" if r["meets_target"] else "NOT met"
    return "\n".join(
        [
            f"ingest: {r['files']} drive logs, {r['bytes'] / 1e6:.1f} MB, {r['messages']:,} messages, "
            f"{r['camera_frames']:,} camera frames -> {r['clips']} clips ({r['workers']} workers)",
            f"  mcap reader alone (1 process)   {r['mcap_read_messages_per_s']:>12,.0f} messages/s",
            f"  dojo ingest                     {r['ingest_messages_per_s']:>12,.0f} messages/s"
            f"  = {r['ingest_camera_frames_per_s']:,.0f} camera frames/s",
            f"  ingest time / mcap read time    {r['ratio_ingest_to_mcap_read_time']:>12.2f}x "
            "(ingest also decodes every frame, hashes, writes Parquet)",
            f"  target >= {r['target_camera_frames_per_s']:,.0f} camera frames/s: {verdict}",
        ]
        + (
            [
                f"  dojo ingest on Ray at {r['ray']}      {r['ray_camera_frames_per_s']:>12,.0f} "
                f"camera frames/s, overhead {r['ray_overhead']:.1%} (target <= "
                f"{r['target_ray_overhead']:.0%})"
            ]
            if "ray" in r
            else []
        )
    )


__all__ = ["TARGET_FRAMES_PER_S", "bench_ingest", "format_ingest", "make_logs", "read_all_messages"]
