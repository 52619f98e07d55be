"""``dojo bench plan`` / ``dojo plan --calibrate``: measure training steps here, fit, compare.

Measures the bare training step of the driving policy (the step of ``dojo bench train``'s
bare loop: one synthetic batch in memory, the trainer's loss, AdamW) for several sizes and
global batches, with 1 process (one thread) and with N processes (one thread each, the model
wrapped in ``DistributedDataParallel`` over gloo, as ``dojo train --nproc N`` runs on a CPU).
Then fits the model's terms (:func:`dojo.compute.calibration.fit`) and reports, for every
configuration, the predicted step time beside the measured one and their ratio, and the
leave-one-out prediction (fitted without that configuration: an out-of-sample check); the
stored calibration's prediction is shown too. A step time is the lower quartile of the timed
steps, the fastest of several rounds (configurations measured in turn): the cores may be
shared, and other load only ever adds time.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dojo.compute.calibration import (
    Calibration,
    Measurement,
    fit,
    leave_one_out,
    load_calibration,
    predict_s,
    save_calibration,
)
from dojo.compute.workload import SIZES, net_workload
from dojo.errors import DojoConfigError
from dojo.validate import choice, whole

WARMUP_STEPS = 3
# the sizes a CPU calibration measures by default: xl (issue 23) is a GPU's size, and its
# 6 GFLOP a sample at the default rig would make `dojo plan --calibrate` take many minutes here
CALIBRATION_SIZES = SIZES[:3]
CLOCKS = ("cpu", "wall")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Timing:
    """A configuration's step time [s] by the wall clock and by the CPU time its process got."""

    wall_s: float
    cpu_s: float

    def faster(self, other: Timing | None) -> Timing:
        return (
            self
            if other is None
            else Timing(min(self.wall_s, other.wall_s), min(self.cpu_s, other.cpu_s))
        )

    def slower(self, other: Timing | None) -> Timing:
        return (
            self
            if other is None
            else Timing(max(self.wall_s, other.wall_s), max(self.cpu_s, other.cpu_s))
        )


def _step_times(model: Any, size: str, local: int, steps: int, seed: int) -> Timing:
    """The robust step time of ``model`` on one in-memory batch of ``local`` samples."""
    import torch

    from dojo.bench.train import _batch
    from dojo.nets.policy import PolicyConfig
    from dojo.train.trainer import policy_loss

    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images, speed, command, action = _batch(PolicyConfig(size=size), local, torch.device("cpu"))
    wall, cpu = [], []
    for k in range(steps + WARMUP_STEPS):
        tick, cpu_tick = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        policy_loss(model(images, speed, command), action).backward()
        opt.step()
        if k >= WARMUP_STEPS:
            wall.append(time.perf_counter() - tick)
            cpu.append(time.process_time() - cpu_tick)
    return Timing(robust_step_s(wall), robust_step_s(cpu))


def robust_step_s(times: Sequence[float]) -> float:
    """The lower quartile of step times [s]: the cores are shared, and other load only adds time."""
    ordered = sorted(times)
    return ordered[(len(ordered) - 1) // 4]


def _ddp_worker(
    rank: int,
    world: int,
    port: int,
    configs: list[tuple[str, int]],
    steps: int,
    rounds: int,
    queue: Any,
) -> None:
    """One of ``world`` processes: the step time of each (size, global batch), DDP over gloo."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from dojo.nets.policy import DrivingPolicy, PolicyConfig

    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        for _ in range(rounds):
            for size, batch in configs:
                torch.manual_seed(0)
                model = DistributedDataParallel(DrivingPolicy(PolicyConfig(size=size)))
                dist.barrier()
                t = _step_times(model, size, -(-batch // world), steps, seed=rank)
                queue.put((size, batch, t.wall_s, t.cpu_s))
                del model  # DDP's reducer holds gloo work: gone before the group is torn down
        # No rank tears its group down while a peer still talks to it: gloo then aborted
        # ("terminate called without an active exception") about once in a few hundred runs.
        dist.barrier()
    finally:
        dist.destroy_process_group()


def measure_ddp(
    configs: Sequence[tuple[str, int]], nproc: int, steps: int, rounds: int = 1
) -> dict[tuple[str, int], Timing]:
    """Step time of each (size, global batch) with ``nproc`` gloo processes of one thread.

    Per round, the slowest process sets the step time; of ``rounds`` rounds (the configurations
    measured in turn), the fastest counts.
    """
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    mp.spawn(
        _ddp_worker,
        args=(nproc, _free_port(), list(configs), steps, rounds, queue),
        nprocs=nproc,
        join=True,
    )
    per_round: dict[tuple[str, int], list[Timing]] = {}
    while not queue.empty():
        size, batch, wall_s, cpu_s = queue.get()
        per_round.setdefault((size, batch), []).append(Timing(wall_s, cpu_s))
    out: dict[tuple[str, int], Timing] = {}
    for key, timings in per_round.items():  # in order: rank results of round 0, then round 1, ...
        best: Timing | None = None
        for r in range(0, len(timings), nproc):
            slowest: Timing | None = None
            for t in timings[r : r + nproc]:
                slowest = t.slower(slowest)
            assert slowest is not None
            best = slowest.faster(best)
        assert best is not None
        out[key] = best
    return out


def measure_single(size: str, batch: int, steps: int) -> Timing:
    """Step time of the bare training step in this process, on one thread."""
    import torch

    from dojo.nets.policy import DrivingPolicy, PolicyConfig

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        return _step_times(DrivingPolicy(PolicyConfig(size=size)), size, batch, steps, seed=0)
    finally:
        torch.set_num_threads(before)


def machine() -> dict[str, Any]:
    import torch

    from dojo.bench.machine import cpu_model

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count() or 1,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": dt.date.today().isoformat(),
        "threads_per_process": 1,
    }


def core_peak() -> tuple[float, str]:
    """(peak FP32 FLOP/s of one core, how): clock x FP32 FLOPs a cycle of its widest FMA units,
    as ``dojo bench train`` counts them (64 with AVX-512, 32 with AVX2)."""
    from dojo.bench.machine import cpu_clock_hz, cpu_flops_per_cycle

    per_cycle, isa = cpu_flops_per_cycle()
    clock = cpu_clock_hz()
    if clock <= 0:
        raise DojoConfigError(
            "The CPU clock could not be read from /proc/cpuinfo; no peak to calibrate against."
        )
    return (
        clock * per_cycle,
        f"1 core x {clock / 1e9:.2f} GHz x {per_cycle} FP32 FLOPs/cycle ({isa})",
    )


def _check(
    sizes: Sequence[str], batches: Sequence[int], nprocs: Sequence[int], steps: int, rounds: int
) -> None:
    if not sizes or any(s not in SIZES for s in sizes):
        raise DojoConfigError(f"sizes={list(sizes)!r} must be some of {', '.join(SIZES)}.")
    if not batches or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in batches):
        raise DojoConfigError(f"batches={list(batches)!r} must be whole numbers, at least 1.")
    if not nprocs or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in nprocs):
        raise DojoConfigError(f"nprocs={list(nprocs)!r} must be whole numbers, at least 1.")
    bad = [(b, n) for b in batches for n in nprocs if b < n]
    if bad:
        raise DojoConfigError(
            f"batch {bad[0][0]} is smaller than {bad[0][1]} processes; each needs a sample."
        )
    whole("steps", steps, 3)
    whole("rounds", rounds, 1)


def bench_plan(
    sizes: Sequence[str] = CALIBRATION_SIZES,
    batches: Sequence[int] = (8, 32),
    nprocs: Sequence[int] = (1, 2),
    steps: int = 20,
    rounds: int = 3,
    clock: str = "cpu",
    out: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Measure, fit, compare; write the new calibration to ``out`` if given. A JSON-able result.

    ``clock``: the step time fitted and compared, ``cpu`` (the CPU time each process got: what
    the step takes on a machine of its own, immune to other users of shared cores) or ``wall``
    (the wall clock: the same on an idle machine, inflated by any other load). Both are
    measured and reported.
    """
    _check(sizes, batches, nprocs, steps, rounds)
    choice("clock", clock, CLOCKS)
    say = log or (lambda _: None)
    try:
        stored: Calibration | None = load_calibration()
    except DojoConfigError:
        stored = None
    peak, peak_how = core_peak()
    configs = [(s, b) for s in sizes for b in batches]
    measured: list[Measurement] = []
    load_before = os.getloadavg()[0]
    for n in nprocs:
        if n == 1:
            times: dict[tuple[str, int], Timing] = {}
            for r in range(rounds):
                say(f"1 process: {len(configs)} configurations, round {r + 1} of {rounds} ...")
                for s, b in configs:
                    times[(s, b)] = measure_single(s, b, steps).faster(times.get((s, b)))
        else:
            say(f"{n} processes (gloo, DDP): {len(configs)} configurations x {rounds} rounds ...")
            times = measure_ddp(configs, n, steps, rounds)
        for s, b in configs:
            w = net_workload("policy", s)
            t = times[(s, b)]
            measured.append(
                Measurement(
                    size=s,
                    batch=b,
                    nproc=n,
                    step_s=t.cpu_s if clock == "cpu" else t.wall_s,
                    flops_per_sample=w.train_flops_per_sample,
                    params=w.params,
                    wall_s=t.wall_s,
                    cpu_s=t.cpu_s,
                )
            )
    info = {
        **machine(),
        "clock": clock,
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    fitted = fit(measured, peak)
    say("leave-one-out fits ...")
    held_out = leave_one_out(measured, peak)
    calibration = Calibration(
        machine=info,
        peak_tflops_per_core=peak / 1e12,
        peak_source=peak_how,
        fit=fitted,
        measurements=tuple(measured),
    )
    rows = []
    for m, loo in zip(measured, held_out, strict=True):
        predicted = predict_s(m, fitted, peak)
        row = {
            "size": m.size,
            "batch": m.batch,
            "nproc": m.nproc,
            "measured_s": m.step_s,
            "wall_s": m.wall_s,
            "cpu_s": m.cpu_s,
            "predicted_s": predicted,
            "ratio": predicted / m.step_s,
            "loo_predicted_s": loo,
            "loo_ratio": loo / m.step_s,
        }
        if stored is not None:
            before = predict_s(m, stored.fit, stored.peak_tflops_per_core * 1e12)
            row["stored_predicted_s"], row["stored_ratio"] = before, before / m.step_s
        rows.append(row)
    written = str(save_calibration(calibration, out)) if out is not None else None
    return {
        "calibration": calibration.to_dict(),
        "rows": rows,
        "written": written,
        "stored_machine": stored.machine if stored else None,
    }


def format_bench(result: dict[str, Any]) -> str:
    cal = result["calibration"]
    f = cal["fit"]
    lines = [
        f"dojo plan calibration on {cal['machine']['cpu']} ({cal['machine']['cores']} cores, torch "
        f"{cal['machine']['torch']}), policy net, bare training step, 1 thread a process",
        f"measured: {cal['machine']['clock']} time a step (lower quartile of the steps, fastest of the rounds); "
        f"load average {cal['machine']['load_average_1min'][0]} -> {cal['machine']['load_average_1min'][1]}",
        f"peak: {cal['peak_source']}",
        f"fit: efficiency {f['efficiency']:.3f}, overhead {1e3 * f['step_overhead_s']:.2f} ms/step, "
        f"optimizer {f['update_gbs']:.2f} GB/s, all-reduce {f['allreduce_gbs']:.3f} GB/s + "
        f"{f['allreduce_latency_us']:.0f} us a ring step, {1e3 * f['sample_overhead_s']:.3f} ms a sample",
        "",
        f"{'size':<6}{'batch':>6}{'procs':>6}{'wall':>11}{'measured':>11}{'predicted':>11}{'ratio':>7}"
        f"{'held out':>11}{'ratio':>7}{'stored fit':>12}{'ratio':>7}",
    ]
    for r in result["rows"]:
        stored = (
            f"{1e3 * r['stored_predicted_s']:>9.1f} ms{r['stored_ratio']:>7.2f}"
            if "stored_predicted_s" in r
            else f"{'n/a':>12}{'':>7}"
        )
        lines.append(
            f"{r['size']:<6}{r['batch']:>6}{r['nproc']:>6}{1e3 * r['wall_s']:>8.1f} ms"
            f"{1e3 * r['measured_s']:>8.1f} ms"
            f"{1e3 * r['predicted_s']:>8.1f} ms{r['ratio']:>7.2f}"
            f"{1e3 * r['loo_predicted_s']:>8.1f} ms{r['loo_ratio']:>7.2f}{stored}"
        )
    worst = max(abs(r["ratio"] - 1) for r in result["rows"])
    worst_loo = max(abs(r["loo_ratio"] - 1) for r in result["rows"])
    lines.append(
        f"\nworst |predicted/measured - 1|: {100 * worst:.1f}% fitted, {100 * worst_loo:.1f}% held out "
        "(target 20%)"
    )
    if result["written"]:
        lines.append(f"wrote {result['written']}")
    return "\n".join(lines)


__all__ = [
    "CALIBRATION_SIZES",
    "CLOCKS",
    "Timing",
    "bench_plan",
    "format_bench",
    "measure_ddp",
    "measure_single",
]
