"""The ``dojo plan`` subcommand (and ``dojo bench plan``): thin over :mod:`dojo.compute`.

dojo plan --net policy --size base --samples 1e9 --system exapod --vs h100-node:64
dojo plan --system tile --nproc 20 --draw plan.png
dojo plan --system cpu-host --nproc 2 --batch 32 --samples 1e5 --precision fp32
dojo plan --calibrate                  # measure here, refit, write the calibration
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from dojo.errors import DojoConfigError
from dojo.nets.options import NET_SIZES


def _si(value: float, unit: str) -> str:
    for scale, prefix in (
        (1e18, "E"),
        (1e15, "P"),
        (1e12, "T"),
        (1e9, "G"),
        (1e6, "M"),
        (1e3, "k"),
    ):
        if abs(value) >= scale:
            return f"{value / scale:,.3g} {prefix}{unit}"
    return f"{value:,.3g} {unit}"


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    for scale, name in ((86400.0, "days"), (3600.0, "h"), (60.0, "min")):
        if seconds >= scale:
            return f"{seconds / scale:,.3g} {name}"
    return f"{seconds:.3g} s"


def format_hierarchy(topology: Any, precision: str) -> str:
    """One line a level: blocks, chips, peak at ``precision``, memory, power, uplink."""
    lines = [
        f"  {'level':<9}{'blocks':>8}{'chips':>8}{'peak ' + precision:>16}{'SRAM/HBM':>11}{'DRAM':>10}"
        f"{'power':>10}{'uplink':>12}"
    ]
    for s in topology.summary():
        lines.append(
            f"  {s.name:<9}{s.blocks:>8,}{s.chips:>8,}{_si(s.peak_tflops[precision] * 1e12, 'FLOP/s'):>16}"
            f"{_si(s.sram_gb * 1e9, 'B'):>11}{_si(s.dram_gb * 1e9, 'B'):>10}{_si(s.power_w, 'W'):>10}"
            f"{_si(s.uplink_gbs * 1e9, 'B/s'):>12}"
        )
    return "\n".join(lines)


def format_plans(plans: list[Any], labels: list[str]) -> str:
    """Plans side by side, one column each."""
    rows: list[tuple[str, list[str]]] = [
        ("chips", [f"{p.chips:,}" for p in plans]),
        (
            "placed in",
            [
                (p.placement.block or "several units")
                + ("" if p.placement.contiguous else " (spilled)")
                for p in plans
            ],
        ),
        ("batch / chip", [f"{p.batch:,} / {p.batch_per_chip:,}" for p in plans]),
        ("step time", [_duration(p.step.total_s) for p in plans]),
        ("  compute", [_duration(p.step.compute_s) for p in plans]),
        ("  optimizer", [_duration(p.step.update_s) for p in plans]),
        (
            "  all-reduce",
            [
                f"{_duration(p.step.exposed_allreduce_s)} of {_duration(p.step.allreduce_s)}"
                for p in plans
            ],
        ),
        ("  fixed", [_duration(p.step.overhead_s) for p in plans]),
        ("steps", [f"{p.steps:,}" for p in plans]),
        ("time to train", [_duration(p.time_to_train_s) for p in plans]),
        ("samples/s", [f"{p.samples_per_s:,.0f}" for p in plans]),
        (
            "achieved",
            [
                f"{_si(p.achieved_pflops * 1e15, 'FLOP/s')} ({100 * p.mfu:.1f}% of peak)"
                for p in plans
            ],
        ),
        ("power", [_si(p.power_w, "W") for p in plans]),
        ("energy", [f"{p.energy_kwh:,.4g} kWh" for p in plans]),
        ("cost", [f"{p.cost:,.4g}" for p in plans]),
    ]
    width = max(
        18, *(len(v) + 2 for _, vals in rows for v in vals), *(len(lab) + 2 for lab in labels)
    )
    out = [f"{'':<15}" + "".join(f"{lab:>{width}}" for lab in labels)]
    out += [f"{name:<15}" + "".join(f"{v:>{width}}" for v in vals) for name, vals in rows]
    return "\n".join(out)


def _calibrate(args: argparse.Namespace) -> int:
    from dojo.bench.plan import bench_plan, format_bench
    from dojo.compute.calibration import USER_PATH

    out = args.calibration or str(USER_PATH.expanduser())
    result = bench_plan(
        steps=args.calibrate_steps,
        clock=args.clock,
        out=out,
        log=lambda m: print(m, file=sys.stderr),
    )
    print(json.dumps(result, indent=2) if args.json else format_bench(result))
    return 0


def _plan(args: argparse.Namespace) -> int:
    from dojo.compute.calibration import all_families, load_calibration
    from dojo.compute.perf import Job, equivalence, plan
    from dojo.compute.topology import parse_system
    from dojo.compute.workload import net_workload

    if args.calibrate:
        return _calibrate(args)
    calibration = load_calibration(args.calibration)
    families = all_families(calibration)
    topo = parse_system(args.system, families)
    other = parse_system(args.vs, families) if args.vs else None
    precision = args.precision or (
        "bf16" if "bf16" in topo.family.precisions else topo.family.precisions[0]
    )
    topo.peak_tflops(0, precision)
    if other is not None:
        other.peak_tflops(0, precision)
    for name in ("samples", "epochs", "price_kwh", "price_chip_hour"):
        if getattr(args, name) < 0:
            raise DojoConfigError(
                f"--{name.replace('_', '-')} {getattr(args, name)} must not be negative."
            )
    job = Job(
        workload=net_workload(args.net, args.size),
        samples=args.samples,
        epochs=args.epochs,
        batch=args.batch,
        precision=precision,
        chips=args.nproc,
    )
    prices = {"price_kwh": args.price_kwh, "price_chip_hour": args.price_chip_hour}
    ours = plan(job, topo, **prices)
    plans, labels = [ours], [topo.name]
    if other is not None and args.vs and ":" in args.vs:
        from dataclasses import replace

        theirs = plan(
            replace(job, batch=ours.batch, chips=min(other.total_chips, ours.batch)),
            other,
            **prices,
        )
        plans.append(theirs)
        labels.append(other.name)
    eq = equivalence(job, ours, other, **prices) if other is not None else None
    if eq is not None and eq.units_needed is not None and eq.plan.system not in labels:
        plans.append(eq.plan)
        labels.append(eq.plan.system)
    drawn = None
    if args.draw:
        from dojo.compute.draw import draw_allocation
        from dojo.compute.placement import Allocator

        alloc = Allocator(topo)
        alloc.allocate("job", ours.chips)
        drawn = str(
            draw_allocation(
                alloc,
                args.draw,
                highlight="job",
                note=f"job: {ours.chips:,} chips in {ours.placement.block or 'several units'}",
            )
        )
    if args.json:
        out: dict[str, Any] = {"plans": [p.to_dict() for p in plans]}
        if eq is not None:
            out["equivalence"] = {
                "unit": eq.unit,
                "units_needed": eq.units_needed,
                "max_units": eq.max_units,
            }
        out["calibration_machine"] = calibration.machine if topo.family.name == "cpu" else None
        out["drawn"] = drawn
        print(json.dumps(out, indent=2))
        return 0
    print(
        f"{job.workload.name} ({job.workload.train_flops_per_sample / 1e9:.3g} GFLOP a sample to train, "
        f"{job.workload.params:,} parameters), {job.samples:,.4g} samples x {job.epochs:g} epoch(s), {precision}"
    )
    print(f"{topo.name}: {topo.family.title}")
    print(format_hierarchy(topo, precision))
    print()
    print(format_plans(plans, labels))
    if eq is not None:
        unit_chips = other.chips_per_block(other.top) if other else 1
        if eq.units_needed is None:
            print(
                f"\nequivalence: no count of {eq.unit} up to {eq.max_units:,} (one sample a chip of the batch) "
                f"matches {topo.name} on this job"
            )
        else:
            print(
                f"\nequivalence: {topo.name} ~ {eq.units_needed:,} x {eq.unit} ({eq.units_needed * unit_chips:,} chips) "
                "on this job, same global batch"
            )
    if topo.family.name == "cpu":
        print(f"calibration: {calibration.machine.get('cpu')} ({calibration.machine.get('date')})")
    else:
        print(
            f"efficiency {topo.family.model.efficiency:g} is assumed for {topo.family.name} (not measured here)"
        )
    if drawn:
        print(f"wrote {drawn}")
    return 0


def add_plan_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--net", default="policy", choices=("policy", "occupancy", "both"), help="network to train"
    )
    p.add_argument("--size", default="base", choices=NET_SIZES, help="network size")
    p.add_argument(
        "--samples", type=float, default=1e9, help="training samples per epoch (e.g. 1e9)"
    )
    p.add_argument("--epochs", type=float, default=1.0, help="passes over the samples")
    p.add_argument("--batch", type=int, default=None, help="global batch (default 32 a chip)")
    p.add_argument(
        "--precision",
        default=None,
        help="bf16 | fp32 | fp16 | fp8 | cfp8 | tf32 (default bf16 where the chip has it)",
    )
    p.add_argument(
        "--system",
        default="exapod",
        help="UNIT[:COUNT]: d1, tile, tray, cabinet, exapod, h100, h100-node, h100-rack, a100..., cpu-core, cpu-host",
    )
    p.add_argument(
        "--vs",
        default=None,
        help="another system, UNIT[:COUNT] (e.g. h100-node:64): its plan and how many of its units match",
    )
    p.add_argument(
        "--nproc",
        type=int,
        default=None,
        help="chips the job uses, data parallel (default: all of the system)",
    )
    p.add_argument(
        "--price-kwh", type=float, default=0.10, help="energy price per kWh (default 0.10)"
    )
    p.add_argument(
        "--price-chip-hour",
        type=float,
        default=0.0,
        help="price per chip-hour (e.g. a cloud GPU-hour)",
    )
    p.add_argument(
        "--calibration",
        default=None,
        help="calibration JSON to read (or, with --calibrate, to write)",
    )
    p.add_argument(
        "--calibrate",
        action="store_true",
        help="measure training steps here (1 and 2 processes), refit and write the calibration",
    )
    p.add_argument(
        "--calibrate-steps",
        type=int,
        default=20,
        help="timed steps per configuration with --calibrate",
    )
    p.add_argument(
        "--clock",
        default="cpu",
        choices=("cpu", "wall"),
        help="with --calibrate: fit the CPU time each process got (immune to other load) or the wall clock",
    )
    p.add_argument(
        "--draw",
        default=None,
        metavar="OUT.png",
        help="write a picture of the hierarchy with the job placed",
    )
    p.add_argument("--json", action="store_true", help="print JSON")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``plan`` on the top-level ``dojo`` parser."""
    p = sub.add_parser(
        "plan",
        help="plan a training job on the compute hierarchy: step time, time to train, energy, cost",
        description="Predict a data-parallel training job's step time (compute over an efficiency, the "
        "optimizer's memory traffic, a hierarchical ring all-reduce over each level's bandwidth), time to "
        "train, energy and cost on Dojo (D1 > tile > tray > cabinet > ExaPOD), DGX H100/A100 or this CPU; "
        "--vs compares with another system and finds how many of its units match.",
    )
    add_plan_arguments(p)
    p.set_defaults(func=_plan)


def _bench_plan(args: argparse.Namespace) -> int:
    from dojo.bench.plan import bench_plan, format_bench

    sizes = tuple(s.strip() for s in args.sizes.split(",") if s.strip())
    try:
        batches = tuple(int(b) for b in args.batches.split(",") if b.strip())
    except ValueError:
        raise DojoConfigError(
            f"--batches {args.batches!r} must be comma-separated whole numbers."
        ) from None
    result = bench_plan(
        sizes,
        batches,
        steps=args.steps,
        rounds=args.rounds,
        clock=args.clock,
        out=args.out,
        log=lambda m: print(m, file=sys.stderr),
    )
    print(json.dumps(result, indent=2) if args.json else format_bench(result))
    return 0


def add_bench_command(bench: argparse._SubParsersAction) -> None:
    """Register ``plan`` under ``dojo bench``: measured vs predicted step times, refit."""
    b = bench.add_parser(
        "plan", help="the planner's predicted step time vs measured here (1 and 2 processes), refit"
    )
    from dojo.bench.plan import CALIBRATION_SIZES

    b.add_argument(
        "--sizes",
        default=",".join(CALIBRATION_SIZES),
        help=f"comma-separated: {', '.join(NET_SIZES)} (default %(default)s)",
    )
    b.add_argument("--batches", default="8,32", help="comma-separated global batches")
    b.add_argument("--steps", type=int, default=20, help="timed steps per configuration")
    b.add_argument(
        "--rounds", type=int, default=3, help="rounds over the configurations; the fastest counts"
    )
    b.add_argument(
        "--clock",
        default="cpu",
        choices=("cpu", "wall"),
        help="fit the CPU time each process got (immune to other load) or the wall clock",
    )
    b.add_argument("--out", default=None, help="write the fitted calibration here (JSON)")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=_bench_plan)
