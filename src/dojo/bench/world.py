"""`dojo bench world`: our world's speed beside highway-env's, measured in the same run."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Callable

from dojo.validate import positive, whole
from dojo.world.world import World

COMPARED_RIG = "quad"  # the rig the default replaced: its camera frames/s are reported beside


def measure_ours(
    worlds: int = 256, seconds: float = 5.0, family: str = "highway", seed0: int = 0
) -> dict[str, float]:
    """Step ``worlds`` worlds with the human-driver model as the ego for ``seconds`` of wall time.

    A vehicle-step is one active, moving vehicle advanced by one 0.1 s step (obstacles and unused
    slots are not counted); a decision is one ego step.
    """
    worlds, seconds = whole("worlds", worlds, 1), positive("seconds", seconds)
    world = World(family, seeds=range(seed0, seed0 + worlds))
    for _ in range(10):  # warm-up: first lane decisions, caches
        world.step(world.expert_action())
    moving = 0
    steps = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        world.step(world.expert_action())
        moving += int((world.vehicles.active & world.vehicles.driven).sum())
        steps += 1
    elapsed = time.perf_counter() - start
    return {
        "vehicle_steps_per_s": moving / elapsed,
        "decisions_per_s": steps * worlds / elapsed,
        "worlds": worlds,
        "mean_vehicles_per_world": moving / max(steps * worlds, 1),
        "seconds": elapsed,
    }


def _worker(args: tuple[int, float, str, int]) -> dict[str, float]:
    return measure_ours(*args)


def measure_ours_parallel(
    processes: int, worlds: int, seconds: float, family: str = "highway"
) -> dict[str, float]:
    """The same measurement in ``processes`` processes at once (one batch each), summed."""
    if processes == 1:
        return measure_ours(worlds, seconds, family)
    jobs = [(worlds, seconds, family, k * worlds) for k in range(processes)]
    with mp.get_context("spawn").Pool(processes) as pool:
        parts = pool.map(_worker, jobs)
    return {
        "vehicle_steps_per_s": sum(p["vehicle_steps_per_s"] for p in parts),
        "decisions_per_s": sum(p["decisions_per_s"] for p in parts),
        "worlds": worlds * processes,
        "processes": processes,
    }


def bench_world(
    seconds: float = 5.0,
    worlds: int = 1024,
    processes: int | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, object]:
    """Run every measurement of `dojo bench world` and return the JSON-able result."""
    from dojo.world.camera import CameraRig, measure_frames_per_s
    from dojo.world.reference import measure_highway_env
    from dojo.world.rigs import DEFAULT_RIG

    processes = processes or os.cpu_count() or 1
    log(f"ours: {worlds} highway worlds, 1 process, {seconds:.0f} s ...")
    ours = measure_ours(worlds, seconds)
    log(f"ours: {worlds} worlds x {processes} processes, {seconds:.0f} s ...")
    ours_all = measure_ours_parallel(processes, worlds, seconds)
    log(f"highway-env highway-fast-v0, {seconds:.0f} s ...")
    ref = measure_highway_env(seconds=seconds)
    world = World("highway", seeds=range(64))
    for _ in range(20):
        world.step(world.expert_action())
    fps: dict[str, float] = {}
    for rig in dict.fromkeys((DEFAULT_RIG, COMPARED_RIG)):  # the default, then the old rig
        log(f"cameras: {rig} rig, {seconds:.0f} s ...")
        fps[rig] = measure_frames_per_s(
            world.roads, world.vehicles, CameraRig.named(rig), seconds=seconds
        )
    ref_vs = float(ref["vehicle_steps_per_s"])
    return {
        "machine": f"{os.cpu_count()} cores",
        "ours_vehicle_steps_per_s": ours["vehicle_steps_per_s"],
        "ours_decisions_per_s": ours["decisions_per_s"],
        "ours_all_cores_vehicle_steps_per_s": ours_all["vehicle_steps_per_s"],
        "ours_all_cores_decisions_per_s": ours_all["decisions_per_s"],
        "ours_mean_vehicles_per_world": ours["mean_vehicles_per_world"],
        "highway_env_vehicle_steps_per_s": ref_vs,
        "highway_env_decisions_per_s": ref["decisions_per_s"],
        "highway_env_vehicles": ref.get("vehicles"),
        "ratio": ours["vehicle_steps_per_s"] / ref_vs,
        "ratio_all_cores": ours_all["vehicle_steps_per_s"] / ref_vs,
        "camera_frames_per_s": fps[DEFAULT_RIG],
        "camera_rig": DEFAULT_RIG,
        "camera_frames_per_s_by_rig": fps,
        "processes": processes,
        "worlds": worlds,
    }


def format_table(result: dict[str, object]) -> str:
    rows = [
        (
            "vehicle-steps/s, 1 core",
            result["ours_vehicle_steps_per_s"],
            result["highway_env_vehicle_steps_per_s"],
            result["ratio"],
        ),
        (
            f"vehicle-steps/s, {result['processes']} processes",
            result["ours_all_cores_vehicle_steps_per_s"],
            result["highway_env_vehicle_steps_per_s"],
            result["ratio_all_cores"],
        ),
        (
            "decisions/s, 1 core",
            result["ours_decisions_per_s"],
            result["highway_env_decisions_per_s"],
            float(result["ours_decisions_per_s"])  # type: ignore[arg-type]
            / float(result["highway_env_decisions_per_s"]),  # type: ignore[arg-type]
        ),
    ]
    out = [f"{'measure':<32}{'dojo':>14}{'highway-env':>14}{'ratio':>10}"]
    for name, a, b, r in rows:
        out.append(f"{name:<32}{float(a):>14,.0f}{float(b):>14,.1f}{float(r):>9.1f}x")  # type: ignore[arg-type]
    by_rig = result.get("camera_frames_per_s_by_rig")
    if not isinstance(by_rig, dict):  # a result written before rigs had names
        by_rig = {"default": result["camera_frames_per_s"]}
    for rig, frames_per_s in by_rig.items():
        default = ", default" if rig == result.get("camera_rig") else ""
        label = f"camera frames/s ({rig} rig{default})"
        out.append(f"{label:<32}{float(frames_per_s):>14,.0f}")  # type: ignore[arg-type]
    return "\n".join(out)


__all__ = ["bench_world", "format_table", "measure_ours", "measure_ours_parallel"]
