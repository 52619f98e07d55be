"""The `dojo eval` subcommand: a policy's nines on a held-out suite, or two of them compared."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from dojo.errors import DojoConfigError
from dojo.eval.config import EvalConfig
from dojo.settings import add_flags, from_args

# the EvalConfig fields `dojo eval` exposes, in --help order (--compare goes after --policy)
EVAL_FLAGS = ("policy", "suite", "suites_file", "decisions", "cars", "seed", "rig")


def _load_or_evaluate(spec: str, args: argparse.Namespace) -> dict[str, Any]:
    """A saved ``dojo eval --json`` result when ``spec`` is a .json file, else a fresh evaluation."""
    if spec.endswith(".json"):
        path = Path(spec)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DojoConfigError(f"Result file {spec} does not exist.") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DojoConfigError(
                f"Result file {spec} is not a readable JSON result ({e})."
            ) from None
        if not isinstance(data, dict):
            raise DojoConfigError(f"Result file {spec} does not hold an evaluation result object.")
        return data
    return _evaluate(spec, args)


def _evaluate(policy: str, args: argparse.Namespace) -> dict[str, Any]:
    from tqdm import tqdm

    from dojo.cluster import resolve_address
    from dojo.eval.evaluate import evaluate

    bars: list[
        Any
    ] = []  # opened at the first step, after every input was checked: errors stay one line

    def progress(done: int, planned: int) -> None:
        if not bars:
            bars.append(
                tqdm(
                    total=planned,
                    desc=f"eval {policy}",
                    unit="decision",
                    disable=args.json,
                    leave=False,
                )
            )
        bars[0].update(done - bars[0].n)

    config: EvalConfig = from_args(EvalConfig, args, EVAL_FLAGS, policy=policy)
    try:
        return evaluate(
            policy,
            suite=config.suite,
            decisions=config.decisions,
            cars=config.cars,
            seed=config.seed,
            suites_file=config.suites_file,
            progress=progress,
            rig=config.rig,
            ray=resolve_address(args.ray),
        )
    finally:
        for bar in bars:
            bar.close()


def _eval(args: argparse.Namespace) -> int:
    from dojo.eval.evaluate import compare_results, format_compare, format_eval

    if args.compare is None and args.policy is None:
        raise DojoConfigError("Give --policy naive|expert|careful|CHECKPOINT, or --compare A B.")
    if args.compare is not None and args.policy is not None:
        raise DojoConfigError("Give either --policy or --compare A B, not both.")
    if args.compare is None:
        result = _evaluate(args.policy, args)
        print(json.dumps(result, indent=2, allow_nan=False) if args.json else format_eval(result))
        return 0
    a, b = (_load_or_evaluate(spec, args) for spec in args.compare)
    verdict = compare_results(a, b)
    if args.json:
        print(json.dumps({"a": a, "b": b, "comparison": verdict}, indent=2, allow_nan=False))
        return 0
    for r in (a, b):
        if "families" in r and "wall_s" in r:
            print(format_eval(r), end="\n\n")
    print(format_compare(verdict))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``eval`` on the top-level ``dojo`` parser."""
    ev = sub.add_parser(
        "eval",
        help="closed-loop evaluation in nines on held-out scenarios, or two policies compared",
        description="Drive a policy in autonomous mode with the safety driver on a suite of held-out "
        "scenarios and report decisions, miles, interventions, collisions and nines = "
        "-log10(critical/decisions) with an exact 95%% interval, per family and overall. "
        "--compare A B tests whether two critical rates differ (Fisher exact, alpha 0.05).",
    )
    add_flags(ev, EvalConfig, ("policy",))
    ev.add_argument(
        "--compare",
        nargs=2,
        metavar=("A", "B"),
        default=None,
        help="two policies (evaluated now on the same suite) or saved --json results (.json)",
    )
    add_flags(ev, EvalConfig, EVAL_FLAGS[1:])
    from dojo.cluster import add_ray_flag

    add_ray_flag(ev)
    ev.add_argument(
        "--json", action="store_true", help="print the result as JSON (unbounded values as null)"
    )
    ev.set_defaults(func=_eval)
