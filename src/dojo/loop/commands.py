"""``dojo loop``: the main job, thin over :func:`dojo.loop.run_loop`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from dojo.loop.config import FLAT_NAMES, LoopConfig
from dojo.settings import add_flags, values_from_args

# the settings `dojo loop` exposes, in --help order: the loop's own and its stages' (by path)
LOOP_FLAGS = (
    "loops",
    "drive.cars",
    "drive.minutes",
    "drive.batch_cars",
    "budget_minutes",
    "out",
    "seed",
    "train.net",
    "train.size",
    "train.steps",
    "train.batch_size",
    "train.labels",
    "train.hazard_weight",
    "train.underbrake_weight",
    "eval.decisions",
    "eval.cars",
    "eval.suite",
    "start_policy",
    "eval.suites_file",
    "sample_normal",
    "hazard_window_s",
    "takeover_window_s",
    "moment_rule",
)
# a stage's setting goes by the loop's flat name on the loop's command line (--train-steps)
LOOP_FLAG_NAMES = {path: "--" + name.replace("_", "-") for name, path in FLAT_NAMES.items()}
# and says what it means for a turn
_HELPS: dict[str, str | None] = {
    "drive.cars": "fleet size per turn (default %(default)s)",
    "drive.minutes": "simulated minutes per car per turn (default %(default)s)",
    "drive.batch_cars": "cars a fleet batch drives, one batch a Ray task with --ray (0: the "
    "whole fleet at once; the logs are the same either way) (default %(default)s)",
    "train.net": "policy | both (policy + occupancy head) | perception (perception heads "
    "driving the planner: needs --labels autolabel) (default %(default)s)",
    "train.size": "tiny | base | large (default %(default)s)",
    "train.steps": "optimizer steps per candidate (default %(default)s)",
    "train.batch_size": None,
    "train.labels": "telemetry: imitate what a person drove (HG-DAgger) | autolabel: every "
    "frame's auto-label, the network's own frames too (DAgger) (default %(default)s)",
    "eval.decisions": "decisions per evaluation, on the same held-out seeds for every model "
    "(default %(default)s)",
    "eval.cars": None,
    "eval.suite": "evaluation suite (default %(default)s)",
    "eval.suites_file": "TOML file with user suites",
}


def _loop(args: argparse.Namespace) -> int:
    from dojo.cluster import resolve_address
    from dojo.loop.flywheel import resume_loop, run_loop

    ray = resolve_address(args.ray)
    from dojo.loop.report import write_report

    quiet = args.json
    log = (lambda m: None) if quiet else (lambda m: print(m, flush=True))
    if args.resume is not None:
        result = resume_loop(
            args.resume, log=log, progress=not quiet and sys.stderr.isatty(), ray=ray
        )
        return _finish(result, args.resume, args.json, write_report)
    config = LoopConfig.from_dict(values_from_args(LoopConfig, args, LOOP_FLAGS))
    result = run_loop(config, log=log, progress=not quiet and sys.stderr.isatty(), ray=ray)
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
    p = sub.add_parser(
        "loop",
        help="the fleet-learning loop: drive, ingest, mine, train, evaluate in nines, promote (the main job)",
        description="Each turn drives the fleet with the deployed model (turn 0: human drivers), ingests the logs, "
        "mines hazards and takeovers, trains a candidate on every window a person drove (or, with --labels autolabel, "
        "on the auto-labels of every frame), evaluates it beside the deployed model on fresh held-out scenarios and "
        "promotes it only if its nines did not get worse.",
    )
    add_flags(p, LoopConfig(), LOOP_FLAGS, flags=LOOP_FLAG_NAMES, helps=_HELPS, choices=False)
    from dojo.cluster import add_ray_flag

    add_ray_flag(p)
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
