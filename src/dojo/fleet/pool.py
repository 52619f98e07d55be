"""Drive several independent fleets at once, a process a core, with the results of one by one.

An evaluation drives one fleet per scenario family, and nothing passes between them: each
fleet's world is built from its own config and seeds, and a policy only reads the world it is
given. So the fleets can drive in forked worker processes, each with one torch thread (two
threads a process on two shared cores make a small net's forward pass up to 20x slower:
measured in docs/benchmarks.md, ``dojo bench eval``), and every fleet's counts come out the same
as when they drive one after the other.

Fork, not spawn: the workers inherit the policy as it is in memory (a model the loop holds, a
timed wrapper), with nothing pickled. A policy whose process already uses CUDA cannot be
forked, and then, as with ``workers=1``, the fleets drive here one after the other.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dojo.fleet.config import DriveConfig
from dojo.fleet.drive import DriveSummary, Fleet
from dojo.fleet.policy import Policy
from dojo.validate import whole

Progress = Callable[[int], None]  # decisions driven so far, all fleets together
_POLL_S = 0.2  # [s] how often the parent reports the workers' progress


@dataclass(frozen=True)
class FleetRun:
    """What one fleet drove: its summary and how many drives each car finished."""

    summary: DriveSummary
    drive_no: np.ndarray  # (N,) drives each car finished; its last, unfinished one not counted
    extra: Any = None  # what ``collect`` took from the fleet after its run (None without one)


def default_workers() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_fleets(
    configs: Sequence[DriveConfig],
    policy: Policy | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
    fleet_type: type[Fleet] = Fleet,
    collect: Callable[[Any], Any] | None = None,
    ray: str | None = None,
    merge_extra: Callable[[list[Any]], Any] | None = None,
) -> list[FleetRun]:
    """Drive a fleet of each config, ``workers`` at a time (default: one a core); in config order.

    ``ray``: the address of a Ray cluster to drive them on instead (then ``workers`` is the
    cluster's business): each fleet in batches of cars (:meth:`DriveConfig.batches` over its
    share of the cluster's CPUs, so a fleet a checkpoint drives stays whole unless its
    ``batch_cars`` asks), a task a batch, merged back into one run a fleet. The results depend
    on neither. Ctrl-C stops
    every fleet and raises KeyboardInterrupt; an error in one fleet is raised here. ``fleet_type``: a :class:`Fleet`
    subclass to drive (one that also tallies something); ``collect(fleet)`` after its run
    gives :attr:`FleetRun.extra` (it crosses back from a worker pickled); a fleet driven in
    batches gets the batches' extras joined with ``merge_extra``, required then.
    """
    if ray is not None:
        return _on_ray(configs, policy, progress, fleet_type, collect, ray, merge_extra)
    n = default_workers() if workers is None else whole("workers", workers, 1)
    n = min(n, len(configs))
    _shared.update(fleet_type=fleet_type, collect=collect)
    try:
        if n <= 1 or not _can_fork(policy):
            return _one_by_one(configs, policy, progress)
        return _in_workers(configs, policy, n, progress)
    finally:
        _shared.clear()


def _finished(
    fleet: Fleet, summary: DriveSummary, collect: Callable[[Any], Any] | None
) -> FleetRun:
    return FleetRun(summary, fleet.drive_no.copy(), None if collect is None else collect(fleet))


def _on_ray(
    configs: Sequence[DriveConfig],
    policy: Policy | None,
    progress: Progress | None,
    fleet_type: type[Fleet],
    collect: Callable[[Any], Any] | None,
    ray: str,
    merge_extra: Callable[[list[Any]], Any] | None,
) -> list[FleetRun]:
    from dojo.cluster import cluster_cpus, map_tasks
    from dojo.fleet.split import merge

    share = max(1, cluster_cpus(ray) // max(1, len(configs)))  # CPUs a fleet
    tasks = [(i, cars) for i, cfg in enumerate(configs) for cars in cfg.batches(share)]
    if collect is not None and merge_extra is None and len(tasks) > len(configs):
        raise AssertionError("a fleet driven in batches needs merge_extra for its extras")
    done = [0] * len(tasks)

    def finished(i: int, run: FleetRun) -> None:
        done[i] = run.summary.decisions
        if progress is not None:
            progress(sum(done))

    shared = (configs, policy, fleet_type, collect)
    parts = map_tasks(_ray_fleet, tasks, ray, shared=shared, finished=finished)
    runs = []
    for i in range(len(configs)):
        mine = [(cars, run) for (j, cars), run in zip(tasks, parts, strict=True) if j == i]
        if len(mine) == 1:
            runs.append(mine[0][1])
            continue
        drive_no = np.zeros(configs[i].cars, dtype=np.int64)
        for cars, run in mine:
            drive_no[cars] = run.drive_no
        summaries = [run.summary for _, run in mine]
        summary = merge(summaries, max(s.wall_s for s in summaries))
        extra = merge_extra([run.extra for _, run in mine]) if merge_extra is not None else None
        runs.append(FleetRun(summary, drive_no, extra))
    return runs


def _ray_fleet(
    shared: tuple[Sequence[DriveConfig], Policy | None, type[Fleet], Any],
    task: tuple[int, list[int]],
) -> FleetRun:
    """One Ray task: a batch of one fleet's cars (all of them, unsplit)."""
    configs, policy, fleet_type, collect = shared
    i, cars = task
    config = configs[i]
    fleet = fleet_type(config, policy, cars=None if len(cars) == config.cars else cars)
    summary = fleet.run()
    if summary.interrupted:
        raise KeyboardInterrupt
    return _finished(fleet, summary, collect)


def _one_by_one(
    configs: Sequence[DriveConfig], policy: Policy | None, progress: Progress | None
) -> list[FleetRun]:
    runs: list[FleetRun] = []
    done = 0  # decisions of the fleets already driven
    for cfg in configs:

        def tick(s: DriveSummary, base: int = done) -> None:
            if progress is not None:
                progress(base + s.decisions)

        fleet = _shared["fleet_type"](cfg, policy, tick)
        summary = fleet.run()
        if summary.interrupted:
            raise KeyboardInterrupt
        runs.append(_finished(fleet, summary, _shared["collect"]))
        done += summary.decisions
    return runs


def _can_fork(policy: Policy | None) -> bool:
    """Whether a forked child can run ``policy``: not once this process holds a CUDA context."""
    if sys.platform == "win32" or "fork" not in multiprocessing.get_all_start_methods():
        return False
    torch = sys.modules.get("torch")
    return torch is None or not torch.cuda.is_initialized()


# What the forked workers inherit: set by the parent just before it forks them.
_shared: dict[str, Any] = {}


def _in_workers(
    configs: Sequence[DriveConfig], policy: Policy | None, n: int, progress: Progress | None
) -> list[FleetRun]:
    ctx = multiprocessing.get_context("fork")
    done = ctx.Array("q", len(configs), lock=False)  # decisions driven, per fleet
    threads = max(1, default_workers() // n)
    _shared.update(configs=list(configs), policy=policy, done=done)
    with ctx.Pool(n, initializer=_start_worker, initargs=(threads,)) as pool:
        pending = [pool.apply_async(_drive, (i,)) for i in range(len(configs))]
        while not all(p.ready() for p in pending):
            for p in pending:
                if p.ready() and not p.successful():
                    p.get()  # raises the worker's error; the pool is terminated
            pending[[p.ready() for p in pending].index(False)].wait(_POLL_S)
            if progress is not None:
                progress(sum(done))
        runs = [p.get() for p in pending]
    if progress is not None:
        progress(sum(done))
    return runs


def map_forked(work: Callable[[int], Any], n: int, workers: int | None = None) -> list[Any]:
    """``[work(0), ..., work(n - 1)]``, computed ``workers`` at a time in forked processes (default
    one a core), each with its share of torch threads; here one by one where forking cannot
    work (see the module doc) or one worker is asked for. ``work`` is inherited, not pickled."""
    w = min(whole("workers", workers, 1) if workers is not None else default_workers(), n)
    if w <= 1 or not _can_fork(None):
        return [work(i) for i in range(n)]
    ctx = multiprocessing.get_context("fork")
    _shared["work"] = work
    try:
        with ctx.Pool(
            w, initializer=_start_worker, initargs=(max(1, default_workers() // w),)
        ) as pool:
            return pool.map(_work, range(n), chunksize=1)
    finally:
        _shared.pop("work", None)


def _work(i: int) -> Any:
    return _shared["work"](i)


def _start_worker(threads: int) -> None:
    # Ctrl-C reaches the whole process group: the parent stops the workers, they stay quiet
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch = sys.modules.get("torch")  # only a network policy has imported it
    if torch is not None:
        torch.set_num_threads(threads)


def _drive(i: int) -> FleetRun:
    done = _shared["done"]

    def tick(s: DriveSummary) -> None:
        done[i] = s.decisions

    fleet = _shared["fleet_type"](_shared["configs"][i], _shared["policy"], tick)
    return _finished(fleet, fleet.run(), _shared["collect"])


__all__ = ["FleetRun", "default_workers", "map_forked", "run_fleets"]
