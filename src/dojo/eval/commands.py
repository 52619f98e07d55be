"""The `dojo eval` and `dojo replay` subcommands: a policy's nines on a held-out suite, two of
them compared, or one logged moment replayed with a policy driving."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from dojo.errors import DojoConfigError
from dojo.eval.config import EvalConfig
from dojo.settings import add_flags, from_args

# the EvalConfig fields `dojo eval` exposes, in --help order (--compare goes after --policy)
EVAL_FLAGS = ("policy", "suite", "suites_file", "decisions", "cars", "seed", "rig", "batch_cars")


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
        if config.suite.endswith(".toml"):  # a regression suite of fleet moments
            from dojo.eval.suite import evaluate_suite, load_suite

            return evaluate_suite(policy, load_suite(config.suite), progress=progress)
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
            batch_cars=config.batch_cars,
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
        if args.json:
            print(json.dumps(result, indent=2, allow_nan=False))
        elif result.get("suite") == "moments":
            from dojo.eval.suite import format_suite_result

            print(format_suite_result(result))
        else:
            print(format_eval(result))
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
    add_replay_command(sub)
    add_suite_command(sub)


def _replay(args: argparse.Namespace) -> int:
    from dojo.eval.replay import format_replay, replay

    result = replay(
        args.log,
        args.from_s,
        seconds=args.seconds,
        policy=args.policy,
        out=args.out,
        start=args.start,
    )
    out = result.as_dict()
    print(json.dumps(out, indent=2, allow_nan=False) if args.json else format_replay(out))
    return 0


def add_replay_command(sub: argparse._SubParsersAction) -> None:
    """Register ``replay`` on the top-level ``dojo`` parser."""
    from dojo.eval.replay import DEFAULT_SECONDS, LOGGED, STARTS

    rp = sub.add_parser(
        "replay",
        help="replay a logged moment with a policy driving (and the safety driver watching)",
        description="Start the world from a drive log at --from (re-simulated exactly when Dojo's "
        "world wrote the log, else placed from its /scene channel), let a policy drive for "
        "--seconds with the safety driver watching, and report decisions, interventions, "
        f"collisions and how far the start is from the log. --policy {LOGGED} follows the log "
        "instead. --out writes the replay as a drive log that opens beside the original.",
    )
    rp.add_argument("log", help="the drive log (.mcap)")
    rp.add_argument(
        "--from", dest="from_s", type=float, required=True, metavar="T", help="the moment [s]"
    )
    rp.add_argument(
        "--seconds",
        type=float,
        default=DEFAULT_SECONDS,
        help=f"how long to drive from it [s] (default {DEFAULT_SECONDS:g})",
    )
    rp.add_argument(
        "--policy",
        default="naive",
        help=f"{LOGGED}, naive, expert, careful or a checkpoint path (default naive)",
    )
    rp.add_argument("--out", default=None, help="write the replay as this drive log (.mcap)")
    rp.add_argument(
        "--start",
        choices=STARTS,
        default="auto",
        help="resim (exact, Dojo's logs), scene (any log with a scene), auto: resim if it can",
    )
    rp.add_argument("--json", action="store_true", help="print the result as JSON")
    rp.set_defaults(func=_replay)


def _suite_from_store(args: argparse.Namespace) -> int:
    from dojo.eval.suite import suite_from_store, write_suite

    suite = suite_from_store(
        args.store,
        [t.strip() for t in args.trigger.split(",") if t.strip()],
        before_s=args.before,
        seconds=args.seconds,
    )
    path = write_suite(suite, args.out)
    counts: dict[str, int] = {}
    for m in suite.moments:
        counts[m.trigger] = counts.get(m.trigger, 0) + 1
    out = {"suite": str(path), "moments": len(suite.moments), "triggers": counts}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        kinds = ", ".join(f"{n} {t}" for t, n in sorted(counts.items())) or "none"
        print(f"wrote {path}: {len(suite.moments)} moments ({kinds})")
    return 0


def add_suite_command(sub: argparse._SubParsersAction) -> None:
    """Register ``suite`` (``suite from-store``) on the top-level ``dojo`` parser."""
    from dojo.data.triggers import BUILTIN
    from dojo.eval.suite import DEFAULT_BEFORE_S, DEFAULT_SECONDS, DEFAULT_TRIGGERS

    su = sub.add_parser("suite", help="regression suites of fleet moments (dojo eval --suite)")
    ss = su.add_subparsers(dest="suite_command", required=True)
    fs = ss.add_parser(
        "from-store",
        help="a suite of every moment the store's events mark",
        description="Write a TOML regression suite of the moments (drive, time, trigger) the "
        "store's events mark; dojo eval --policy P --suite SUITE.toml drives each of them "
        "from --before seconds ahead for --seconds and reports pass or fail per moment.",
    )
    fs.add_argument("store", help="the clip store (a folder or an fsspec URL)")
    fs.add_argument(
        "--trigger",
        default=",".join(DEFAULT_TRIGGERS),
        help=f"comma-separated, of the data engine's: {', '.join(sorted(BUILTIN))} "
        "(default %(default)s)",
    )
    fs.add_argument(
        "--before",
        type=float,
        default=DEFAULT_BEFORE_S,
        help="start each replay this long before its moment [s] (default %(default)s)",
    )
    fs.add_argument(
        "--seconds",
        type=float,
        default=DEFAULT_SECONDS,
        help="drive each moment this long [s] (default %(default)s)",
    )
    fs.add_argument("--out", required=True, help="the suite file to write (.toml)")
    fs.add_argument("--json", action="store_true")
    fs.set_defaults(func=_suite_from_store)
