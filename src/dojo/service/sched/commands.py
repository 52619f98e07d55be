"""``dojo sched simulate|run`` and ``dojo agent``: thin over scheduler, simulate, dispatch, agent."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from dojo.errors import DojoConfigError
from dojo.service.commands import db_url, store_flags


def _simulate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from dojo.compute.topology import parse_system
    from dojo.service.sched.simulate import compare, format_comparison, plot
    from dojo.service.sched.trace import SyntheticSpec, load_trace, synthetic, write_trace

    topology = parse_system(args.system)
    if args.restart_s < 0:
        raise DojoConfigError(f"--restart-s {args.restart_s} must be >= 0.")
    if args.trace == "synthetic":
        trace = synthetic(
            SyntheticSpec(
                jobs=args.jobs,
                seed=args.seed,
                load=args.load,
                total_chips=topology.total_chips,
                max_chips=topology.total_chips,
            )
        )
    else:
        trace = load_trace(args.trace)
        too_big = [j for j in trace if j.chips > topology.total_chips]
        if too_big:
            raise DojoConfigError(
                f"--trace {args.trace}: job {too_big[0].id} asks for {too_big[0].chips} chips; "
                f"{topology.name} has {topology.total_chips}."
            )
    if args.write_trace:
        write_trace(trace, args.write_trace)
    with tqdm(
        total=4 * len(trace),
        desc="simulate ours, fifo",
        unit="event",
        disable=args.json,
        leave=False,
    ) as bar:
        out = compare(
            trace,
            topology,
            restart_s=args.restart_s,
            keep_within=args.keep_within,
            on_event=lambda: bar.update(1),
        )
    if args.plot:
        plot(out, args.plot)
    shown = {k: v for k, v in out.items() if not k.startswith("_")}
    shown["trace"] = (
        args.trace
        if args.trace != "synthetic"
        else {"synthetic": True, "jobs": args.jobs, "seed": args.seed, "load": args.load}
    )
    if args.json:
        print(json.dumps(shown, indent=2))
    else:
        print(format_comparison(out))
        target = out["ratio"]["mean_jct"]
        print(
            f"target mean JCT <= 0.5 x FIFO: {'met' if target is not None and target <= 0.5 else 'NOT met'}"
            f"; avoidable cabinet splits (ours): {out['ours']['avoidable_splits']}"
        )
        if args.plot:
            print(f"wrote {args.plot}")
    return 0


def _sched_run(args: argparse.Namespace) -> int:
    from dojo.compute.topology import parse_system
    from dojo.service.sched.dispatch import schedule_pass
    from dojo.service.store.db import Database

    db = Database(db_url(args))
    db.migrate()
    topology = parse_system(args.system)
    while True:
        r = schedule_pass(db, topology)
        if r.placed or r.preempted or args.once:
            print(
                json.dumps(
                    {"placed": r.placed, "preempted": r.preempted, "reservation": r.reservation}
                ),
                flush=True,
            )
        if args.once:
            return 0
        time.sleep(args.interval)


def _agent(args: argparse.Namespace) -> int:
    from dojo.compute.topology import parse_system
    from dojo.service.agent.runner import Agent

    agent = Agent(
        db_url(args),
        data_dir=args.data_dir,
        host_name=args.host_name,
        heartbeat_s=args.heartbeat_s,
        stale_after_s=args.stale_after_s,
        poll_s=args.poll_s,
        max_nproc=args.max_nproc,
        schedule=not (args.no_schedule or args.claim_queued),
        topology=parse_system(args.system),
        claim_status="queued" if args.claim_queued else "placed",
    )
    try:
        ran = agent.run(once=args.once)
    except KeyboardInterrupt:
        return 130
    if args.once:
        print(f"ran {ran} job(s)", file=sys.stderr)
    return 0


def _store_flags(p: argparse.ArgumentParser) -> None:
    store_flags(p, data_dir_help="the service's data folder (shared by all agents)")
    p.add_argument(
        "--system", default="exapod", help="the machine the scheduler places on (default exapod)"
    )


def add_commands(sub: Any) -> None:
    """Register ``sched`` (simulate, run) and ``agent`` on the top-level ``dojo`` parser."""
    sc = sub.add_parser(
        "sched", help="the topology-aware scheduler: simulate a trace, or run it on a job store"
    )
    ssub = sc.add_subparsers(dest="sched_command", required=True)
    sim = ssub.add_parser(
        "simulate",
        help="replay a job trace: ours (gang, topology-aware, priorities, fair share, "
        "backfill) beside strict FIFO, same run",
    )
    sim.add_argument(
        "--trace",
        required=True,
        help="a .jsonl or .csv trace (see docs/scheduler.md), or 'synthetic'",
    )
    sim.add_argument("--jobs", type=int, default=1000, help="synthetic: jobs (default 1000)")
    sim.add_argument("--seed", type=int, default=0, help="synthetic: seed")
    sim.add_argument(
        "--load",
        type=float,
        default=0.9,
        help="synthetic: offered load, chip-seconds asked per "
        "chip-second of the machine (default 0.9)",
    )
    sim.add_argument(
        "--system", default="exapod", help="machine (default exapod: 3,000 D1 = 120 tiles)"
    )
    sim.add_argument(
        "--keep-within",
        default=None,
        help="level a job must not spread over more blocks of than it needs (default cabinet)",
    )
    sim.add_argument(
        "--restart-s", type=float, default=60.0, help="cost of resuming a preempted job [s]"
    )
    sim.add_argument(
        "--write-trace", default=None, metavar="OUT.jsonl", help="also write the trace replayed"
    )
    sim.add_argument(
        "--plot",
        default=None,
        metavar="OUT.png",
        help="utilization over time and JCT, ours vs FIFO",
    )
    sim.add_argument("--json", action="store_true")
    sim.set_defaults(func=_simulate)

    run = ssub.add_parser("run", help="schedule the job store's queued jobs (agents also do this)")
    _store_flags(run)
    run.add_argument("--interval", type=float, default=2.0, help="seconds between passes")
    run.add_argument("--once", action="store_true", help="one pass, then exit")
    run.set_defaults(func=_sched_run)

    ag = sub.add_parser(
        "agent",
        help="claim placed jobs from the job store and run them (heartbeats, logs, "
        "metrics, resume)",
    )
    _store_flags(ag)
    ag.add_argument(
        "--host-name", default=None, help="this host's name in the job store (default: hostname)"
    )
    ag.add_argument("--once", action="store_true", help="claim and run at most one job, then exit")
    ag.add_argument("--heartbeat-s", type=float, default=5.0, help="seconds between heartbeats")
    ag.add_argument(
        "--stale-after-s",
        type=float,
        default=60.0,
        help="requeue jobs whose agent has not heartbeat for this long",
    )
    ag.add_argument("--poll-s", type=float, default=2.0, help="seconds between claims when idle")
    ag.add_argument(
        "--max-nproc",
        type=int,
        default=1,
        help="most processes a train or script job gets on this host",
    )
    ag.add_argument(
        "--no-schedule",
        action="store_true",
        help="do not run scheduling passes (a `dojo sched run` does)",
    )
    ag.add_argument(
        "--claim-queued",
        action="store_true",
        help="claim queued jobs directly, without a scheduler",
    )
    ag.set_defaults(func=_agent)
