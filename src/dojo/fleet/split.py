"""A fleet drive split into batches of cars, driven one after another or as Ray tasks.

Each car's worlds are seeded from its number in the fleet (:meth:`DriveConfig.drive_seed`), so a
batch of cars drives, and logs, exactly what those cars do in the whole fleet: the batches'
logs together are the whole drive's, byte for byte, however it was split (tested).

On Ray a batch writes into a folder of its own attempt, ``out/.batch-NNN-<random>/``, and the
driver moves its logs into ``out`` only once the task has returned: a task whose worker died
and was retried leaves a torn attempt folder behind, which is removed at the end and never
counted. Every node must reach ``out`` (a shared folder); that is checked before any car moves.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dojo.fleet.config import DriveConfig
from dojo.fleet.drive import DriveSummary, Fleet, output_folder
from dojo.fleet.policy import Policy

# decisions, critical interventions and collisions so far, all batches together
Progress = Callable[[int, int, int], None]
ATTEMPT_PREFIX = ".batch-"

# how each DriveSummary field of the batches makes the whole drive's
_SUMMED = {
    "cars",
    "decisions",
    "miles",
    "critical_interventions",
    "noncritical_interventions",
    "shadow_disagreements",
    "near_misses",
    "hard_brakes",
    "collisions",
    "drives",
    "frames_logged",
    "bytes",
    "sensors_s",
    "logging_s",
    "video_logging_s",
}
_SAME = {"mode", "policy", "minutes"}
_PROGRESS = ("decisions", "critical_interventions", "collisions")
_OWN = {"files", "reasons", "interrupted", "wall_s"}


def _check_fields() -> None:
    names = {f.name for f in dataclasses.fields(DriveSummary)}
    if names != _SUMMED | _SAME | _OWN:  # a new counter must be merged here too
        raise AssertionError(
            f"merge() does not know DriveSummary fields {names ^ (_SUMMED | _SAME | _OWN)}"
        )


def merge(parts: list[DriveSummary], wall_s: float) -> DriveSummary:
    """The whole drive's summary from its batches' (files sorted by name)."""
    _check_fields()
    first = parts[0]
    out = DriveSummary(cars=0, mode=first.mode, policy=first.policy, minutes=first.minutes)
    for p in parts:
        for name in _SUMMED:
            setattr(out, name, getattr(out, name) + getattr(p, name))
        out.files += p.files
        out.interrupted |= p.interrupted
        for k, v in p.reasons.items():
            out.reasons[k] = out.reasons.get(k, 0) + v
    out.files.sort()
    out.wall_s = wall_s
    return out


def drive_batches(
    config: DriveConfig,
    policy: Policy | None = None,
    ray: str | None = None,
    progress: Progress | None = None,
) -> DriveSummary:
    """Drive ``config`` in batches of ``config.batch_cars`` cars, here or on the cluster at ``ray``.

    Without ``ray`` the batches drive here one after another (all cars in one fleet when
    ``batch_cars`` is 0). On Ray, ``batch_cars`` 0 makes one batch a CPU of the cluster.
    """
    start = time.perf_counter()
    if ray is None and len(config.batches()) == 1:  # the whole fleet, straight into out
        summary = Fleet(config, policy, _ticker(progress, (0, 0, 0))).run()
        summary.files.sort()
        return summary
    if config.logging != "none":
        output_folder(config.out)  # a clear error before any car moves
    try:
        if ray is not None:
            results = _on_ray(config, policy, ray, progress)
        else:
            results = []
            base = (0, 0, 0)
            for i, cars in enumerate(config.batches()):
                results.append(_drive_batch(config, policy, i, cars, _ticker(progress, base)))
                s = results[-1][0]
                base = (
                    base[0] + s.decisions,
                    base[1] + s.critical_interventions,
                    base[2] + s.collisions,
                )
                if s.interrupted:
                    break
        return merge(_adopt_all(config, results), time.perf_counter() - start)
    finally:
        _remove_attempts(config)


def _ticker(
    progress: Progress | None, base: tuple[int, int, int]
) -> Callable[[DriveSummary], None] | None:
    """A fleet's on_step that reports its counts on top of the batches' before it."""
    if progress is None:
        return None
    return lambda s: progress(
        base[0] + s.decisions, base[1] + s.critical_interventions, base[2] + s.collisions
    )


def _on_ray(
    config: DriveConfig, policy: Policy | None, ray: str, progress: Progress | None
) -> list[tuple[DriveSummary, str]]:
    from dojo.cluster import check_shared_path, cluster_cpus, map_tasks

    if config.logging != "none":
        check_shared_path(ray, config.out, "log folder")
    if policy is None and os.path.exists(config.policy):
        check_shared_path(ray, config.policy, "checkpoint")
    batches = config.batches(cluster_cpus(ray))
    done: list[DriveSummary] = []

    def finished(_: int, result: tuple[DriveSummary, str]) -> None:
        done.append(result[0])
        if progress is not None:
            progress(*(sum(getattr(s, k) for s in done) for k in _PROGRESS))

    items = [(i, cars) for i, cars in enumerate(batches)]
    return map_tasks(_drive_task, items, ray, shared=(config, policy), finished=finished)


def _drive_batch(
    config: DriveConfig,
    policy: Policy | None,
    i: int,
    cars: list[int],
    on_step: Callable[[DriveSummary], None] | None = None,
) -> tuple[DriveSummary, str]:
    """Batch ``i`` of cars, into an attempt folder of its own."""
    folder = Path(config.out) / f"{ATTEMPT_PREFIX}{i:03d}-{uuid.uuid4().hex[:8]}"
    return Fleet(config, policy, on_step, cars=cars, folder=folder).run(), str(folder)


def _drive_task(shared: tuple[DriveConfig, Policy | None], item: tuple[int, list[int]]) -> Any:
    """One Ray task: a batch of cars."""
    summary, folder = _drive_batch(*shared, *item)
    if summary.interrupted:
        raise KeyboardInterrupt
    return summary, folder


def _adopt_all(config: DriveConfig, results: list[tuple[DriveSummary, str]]) -> list[DriveSummary]:
    """The batches' summaries, their logs moved from their attempt folders into ``out``."""
    if config.logging != "none":
        for summary, folder in results:
            summary.files = [_adopt(Path(config.out), Path(folder), f) for f in summary.files]
    return [summary for summary, _ in results]


def _adopt(out: Path, folder: Path, file: str) -> str:
    """Move one log of a finished batch from its attempt folder into ``out``."""
    src = folder / Path(file).name
    dst = out / src.name
    os.replace(src, dst)  # same file system: one atomic rename
    return str(dst)


def _remove_attempts(config: DriveConfig) -> None:
    """Every attempt folder left: a retried task's torn one, or all of them after an error."""
    for folder in Path(config.out).glob(ATTEMPT_PREFIX + "*"):
        shutil.rmtree(folder, ignore_errors=True)


__all__ = ["drive_batches", "merge"]
