"""``dojo loop``: the main job, thin over :func:`dojo.loop.run_loop`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from dojo.loop.config import LoopConfig


def _window(text: str) -> tuple[float, float]:
    from dojo.data.mine import parse_window

    return parse_window(text)


def _loop(args: argparse.Namespace) -> int:
    from dojo.loop.flywheel import resume_loop, run_loop
    from dojo.loop.report import write_report

    quiet = args.json
    log = (lambda m: None) if quiet else (lambda m: print(m, flush=True))
    if args.resume is not None:
        result = resume_loop(args.resume, log=log, progress=not quiet and sys.stderr.isatty())
        return _finish(result, args.resume, args.json, write_report)
    config = LoopConfig(
        out=args.out,
        loops=args.loops,
        cars=args.cars,
        drive_minutes=args.drive_minutes,
        budget_minutes=args.budget_minutes,
        seed=args.seed,
        net=args.net,
        size=args.size,
        train_steps=args.train_steps,
        batch_size=args.batch_size,
        eval_decisions=args.eval_decisions,
        eval_cars=args.eval_cars,
        suite=args.suite,
        suites_file=args.suites_file,
        sample_normal=args.sample_normal,
        start_policy=args.start_policy,
        hazard_window_s=_window(args.hazard_window),
        takeover_window_s=_window(args.takeover_window),
    )
    result = run_loop(config, log=log, progress=not quiet and sys.stderr.isatty())
    return _finish(result, config.out, args.json, write_report)


def _finish(result: dict[str, Any], out: str, as_json: bool, write_report: Any) -> int:
    result["report"] = str(write_report(result, out))
    if as_json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(format_summary(result))
    return 0


def format_summary(result: dict[str, Any]) -> str:
    dep = result["deployed"]
    vs_n, vs_e = result["versus_naive"], result["versus_expert"]

    def verdict(v: dict[str, Any], other: str) -> str:
        if not v["significant"]:
            return f"not significantly different from {other} (Fisher p = {v['p_value']:.2g})"
        side = "safer" if v["safer"] == dep["policy"] else "less safe"
        return f"significantly {side} than {other} (Fisher p = {v['p_value']:.2g})"

    lines = [
        f"deployed after {len(result['loops'])} loop(s): {dep['model']} "
        f"({dep['critical_interventions']:,} critical in {dep['decisions']:,} decisions, "
        f"nines {dep['nines']:.2f} [{dep['nines_low']:.2f}, {dep['nines_high']:.2f}])",
        f"  naive  nines {result['naive_nines']:.2f}: deployed is {verdict(vs_n, 'naive')}",
        f"  expert nines {'>=' if result['expert_nines_is_bound'] else ''}{result['expert_nines']:.2f}: "
        f"deployed is {verdict(vs_e, 'expert')}",
    ]
    if result["stopped_early"]:
        lines.append(f"  stopped early: {result['stopped_early']}")
    lines.append(f"report: {result['report']}  ({result['wall_s'] / 60:.1f} min)")
    return "\n".join(lines)


def add_commands(sub: Any) -> None:
    d = LoopConfig()
    p = sub.add_parser(
        "loop",
        help="the fleet-learning loop: drive, ingest, mine, train, evaluate in nines, promote (the main job)",
        description="Each turn drives the fleet with the deployed model (turn 0: human drivers), ingests the logs, "
        "mines hazards and takeovers, trains a candidate on every window a person drove, evaluates it on held-out "
        "scenarios and promotes it only if its nines did not get worse.",
    )
    p.add_argument(
        "--loops", type=int, default=d.loops, help="turns, counted from 0 (default %(default)s)"
    )
    p.add_argument(
        "--cars", type=int, default=d.cars, help="fleet size per turn (default %(default)s)"
    )
    p.add_argument(
        "--drive-minutes",
        type=float,
        default=d.drive_minutes,
        help="simulated minutes per car per turn (default %(default)s)",
    )
    p.add_argument(
        "--budget-minutes",
        type=float,
        default=d.budget_minutes,
        help="wall-clock budget; no turn starts that would overrun it (default %(default)s)",
    )
    p.add_argument(
        "--out", default=d.out, help="an empty or new folder for everything (default %(default)s)"
    )
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument(
        "--net", default=d.net, help="policy | both (policy + occupancy head) (default %(default)s)"
    )
    p.add_argument("--size", default=d.size, help="tiny | base | large (default %(default)s)")
    p.add_argument(
        "--train-steps",
        type=int,
        default=d.train_steps,
        help="optimizer steps per candidate (default %(default)s)",
    )
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument(
        "--eval-decisions",
        type=int,
        default=d.eval_decisions,
        help="decisions per evaluation, on the same held-out seeds for every model (default %(default)s)",
    )
    p.add_argument("--eval-cars", type=int, default=d.eval_cars)
    p.add_argument("--suite", default=d.suite, help="evaluation suite (default %(default)s)")
    p.add_argument(
        "--start-policy",
        default=d.start_policy,
        metavar="naive|PATH",
        help="the model deployed before turn 0: naive or a policy checkpoint, which also "
        "warm-starts the first candidate (default %(default)s)",
    )
    p.add_argument("--suites-file", default=None, help="TOML file with user suites")
    p.add_argument(
        "--sample-normal",
        type=float,
        default=d.sample_normal,
        help="share of untriggered driving mined each turn (default %(default)s)",
    )
    p.add_argument(
        "--hazard-window",
        default="-3s:+2s",
        help="window around a hazard moment (default %(default)s)",
    )
    p.add_argument(
        "--takeover-window",
        default="0s:+3s",
        help="window from a takeover on (default %(default)s)",
    )
    p.add_argument(
        "--resume",
        metavar="DIR",
        default=None,
        help="continue the loop in DIR from its last completed stage, with the settings it was started "
        "with (other settings are ignored; the budget counts from now)",
    )
    p.add_argument(
        "--json", action="store_true", help="print the result as JSON (key 'loops' holds the rows)"
    )
    p.set_defaults(func=_loop)
