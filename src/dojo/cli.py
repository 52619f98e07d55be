"""The `dojo` command: one subcommand per stage, thin over library functions."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
from collections.abc import Sequence
from typing import Any

from dojo.errors import DojoConfigError, DojoError

# the DriveConfig fields `dojo drive` exposes, in --help order (flag, default, help: the fields')
DRIVE_FLAGS = (
    "cars",
    "minutes",
    "mode",
    "policy",
    "families",
    "seed",
    "out",
    "drive_s",
    "logging",
    "heldout",
    "rig",
    "batch_cars",
)


def _world_survey(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from dojo.world.scenarios import FAMILIES, check_family
    from dojo.world.survey import DRIVERS, run_episodes
    from dojo.world.world import DT_S

    families = [check_family(f) for f in (args.families.split(",") if args.families else FAMILIES)]
    drivers = args.drivers.split(",")
    for d in drivers:
        if d not in DRIVERS:
            raise DojoConfigError(f"Unknown driver {d!r}; choose from: {', '.join(DRIVERS)}.")
    if args.worlds < 1:
        raise DojoConfigError(f"--worlds {args.worlds} must be at least 1.")
    seeds = range(args.seed, args.seed + args.worlds)
    rows = []
    steps = int(round(args.seconds / DT_S))
    with tqdm(
        total=len(families) * len(drivers) * steps,
        desc="survey",
        unit="step",
        disable=args.json,
        leave=False,
    ) as bar:
        for fam in families:
            for driver in drivers:
                rows.append(
                    run_episodes(fam, driver, seeds, args.seconds, on_step=lambda: bar.update(1))
                )
                bar.update(len(rows) * steps - bar.n)  # episodes that all ended early skip ahead
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
        return 0
    print(
        f"{args.worlds} worlds x {args.seconds:g} s per family (seeds {seeds.start}..{seeds.stop - 1}); "
        f"critical = TTC < 1.5 s or collision"
    )
    print(f"{'family':<11}{'driver':<8}{'decisions':>11}{'critical':>10}{'rate':>10}{'crashes':>9}")
    for r in rows:
        print(
            f"{r.family:<11}{r.driver:<8}{r.decisions:>11,}{r.critical:>10,}{r.critical_rate:>10.2%}{r.collisions:>9}"
        )
    return 0


def _world_render(args: argparse.Namespace) -> int:
    from dojo.world.camera import CameraRig
    from dojo.world.render import render_clip, render_moment

    rig = CameraRig.named(args.rig)
    if args.gif:
        n = render_clip(
            args.scenario,
            args.seed,
            args.out,
            seconds=args.seconds,
            driver=args.driver,
            at_s=args.at,
            rig=rig,
        )
        print(f"wrote {args.out} ({n} frames)")
    else:
        render_moment(args.scenario, args.seed, args.out, at_s=args.at, driver=args.driver, rig=rig)
        print(f"wrote {args.out}")
    return 0


def _bench_world(args: argparse.Namespace) -> int:
    from dojo.bench.world import bench_world, format_table

    result = bench_world(
        seconds=args.seconds, worlds=args.worlds, log=lambda m: print(m, file=sys.stderr)
    )
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0


def _drive(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from dojo.cluster import resolve_address
    from dojo.fleet.config import DriveConfig
    from dojo.fleet.split import drive_batches
    from dojo.settings import from_args

    config = from_args(DriveConfig, args, DRIVE_FLAGS)
    ray = resolve_address(args.ray)
    with tqdm(
        total=config.steps * config.cars,
        desc=f"drive {config.cars} cars",
        unit="decision",
        disable=args.json,
        leave=False,
        delay=0.5,  # an error found before any car moves stays one line
    ) as bar:

        def tick(decisions: int, critical: int, collisions: int) -> None:
            bar.update(decisions - bar.n)
            bar.set_postfix(critical=critical, collisions=collisions, refresh=False)

        summary = drive_batches(config, ray=ray, progress=tick)
    out = summary.as_dict()
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(format_drive_summary(out))
    return 130 if summary.interrupted else 0


def format_drive_summary(s: dict[str, Any]) -> str:
    """The human-readable ``dojo drive`` summary."""
    lines = [
        f"{'interrupted: ' if s['interrupted'] else ''}{s['cars']} cars, {s['minutes']:.1f} simulated min each, "
        f"mode {s['mode']}, policy {s['policy']}: {s['miles']:.1f} miles, {s['decisions']:,} decisions in {s['wall_s']:.1f} s",
        f"  critical interventions    {s['critical_interventions']:>8,}",
        f"  non-critical              {s['noncritical_interventions']:>8,}",
        f"  shadow disagreements      {s['shadow_disagreements']:>8,}",
        f"  near misses / hard brakes {s['near_misses']:>8,} / {s['hard_brakes']:,}",
        f"  collisions                {s['collisions']:>8,}",
        f"  logs                      {len(s['files']):>8,} files, {s['bytes'] / 1e6:.1f} MB, {s['frames_logged']:,} frames",
    ]
    if s["reasons"]:
        lines.append("  reasons: " + ", ".join(f"{k} {v}" for k, v in sorted(s["reasons"].items())))
    return "\n".join(lines)


def _bench_drive(args: argparse.Namespace) -> int:
    from dojo.bench.drive import bench_drive, format_table

    result = bench_drive(
        cars=args.cars,
        seconds=args.seconds,
        mode=args.mode,
        log=lambda m: print(m, file=sys.stderr),
    )
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0


def _bench_data(args: argparse.Namespace) -> int:
    from dojo.bench.data import bench_data, format_result
    from dojo.cluster import resolve_address

    parts = tuple(p.strip() for p in args.parts.split(",") if p.strip())
    result = bench_data(
        parts,
        rows=args.rows,
        cars=args.cars,
        seconds=args.seconds,
        repeats=args.repeats,
        log=lambda m: print(m, file=sys.stderr),
        ray=resolve_address(args.ray),
    )
    print(json.dumps(result, indent=2) if args.json else format_result(result))
    return 0


def _bench_train(args: argparse.Namespace) -> int:
    from dojo.bench.train import bench_train, format_train

    sizes = tuple(s.strip() for s in args.sizes.split(",") if s.strip())
    result = bench_train(
        sizes, steps=args.steps, batch_size=args.batch_size, log=lambda m: print(m, file=sys.stderr)
    )
    print(json.dumps(result, indent=2) if args.json else format_train(result))
    return 0


def _bench_eval(args: argparse.Namespace) -> int:
    from dojo.bench.eval import bench_eval, format_eval_bench
    from dojo.cluster import resolve_address

    cars = tuple(int(c) for c in args.cars.split(",") if c.strip())
    result = bench_eval(
        decisions=args.decisions,
        cars=cars,
        device=args.device,
        log=lambda m: print(m, file=sys.stderr),
        ray=resolve_address(args.ray),
    )
    print(json.dumps(result, indent=2) if args.json else format_eval_bench(result))
    return 0


def _bench_nines(args: argparse.Namespace) -> int:
    from dojo.bench.nines import bench_nines, format_bench_nines

    result = bench_nines(trials=args.trials, seed=args.seed)
    print(json.dumps(result, indent=2) if args.json else format_bench_nines(result))
    return 0


def _bench_perception(args: argparse.Namespace) -> int:
    from dojo.bench.perception import bench_perception, format_perception

    result = bench_perception(
        args.minutes,
        cars=args.cars,
        drive_minutes=args.drive_minutes,
        heldout_cars=args.heldout_cars,
        log=lambda m: print(m, file=sys.stderr),
    )
    print(json.dumps(result, indent=2) if args.json else format_perception(result))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dojo", description="Fleet video and drive logs in, better driving networks out."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    world = sub.add_parser("world", help="the batched traffic world").add_subparsers(
        dest="world_command", required=True
    )
    survey = world.add_parser(
        "survey",
        help="critical-situation rates per scenario family: naive driver vs the human-driver model",
    )
    survey.add_argument("--families", default="", help="comma-separated families (default: all)")
    survey.add_argument(
        "--worlds", type=int, default=64, help="episodes (worlds) per family and driver"
    )
    survey.add_argument("--seconds", type=float, default=30.0, help="episode length [s]")
    survey.add_argument("--seed", type=int, default=0, help="first seed")
    survey.add_argument(
        "--drivers",
        default="naive,human,expert",
        help="who drives the ego: naive (constant speed, keep lane), human (IDM + MOBIL with reaction delay "
        "and lapses), expert (the same model with perfect perception)",
    )
    survey.add_argument("--json", action="store_true", help="print JSON instead of a table")
    survey.set_defaults(func=_world_survey)

    render = world.add_parser(
        "render", help="camera mosaic beside the BEV occupancy grid of one moment (or a GIF)"
    )
    render.add_argument("--scenario", default="highway", help="scenario family")
    render.add_argument("--seed", type=int, default=0)
    render.add_argument("--out", required=True, help="output .png (or .gif with --gif)")
    render.add_argument(
        "--at",
        type=float,
        default=None,
        help="moment to show [s] (default: the scenario's first hazard, else 5 s)",
    )
    render.add_argument("--gif", action="store_true", help="write a few seconds as an animated GIF")
    render.add_argument("--seconds", type=float, default=4.0, help="GIF length [s]")
    render.add_argument(
        "--driver", default="expert", choices=["expert", "naive"], help="who drives the ego"
    )
    from dojo.fleet.config import DriveConfig
    from dojo.settings import add_flags

    add_flags(render, DriveConfig, ("rig",))
    render.set_defaults(func=_world_render)

    dr = sub.add_parser(
        "drive", help="drive a simulated fleet and write one MCAP drive log per car per drive"
    )
    add_flags(dr, DriveConfig, DRIVE_FLAGS)
    from dojo.cluster import add_ray_flag

    add_ray_flag(dr)
    dr.add_argument("--json", action="store_true", help="print the summary as JSON")
    dr.set_defaults(func=_drive)

    from dojo.data.commands import add_commands as add_data_commands

    add_data_commands(sub)

    from dojo.train.launch import add_train_command

    add_train_command(sub)

    from dojo.eval.commands import add_commands as add_eval_commands

    add_eval_commands(sub)

    from dojo.loop.commands import add_commands as add_loop_commands

    add_loop_commands(sub)

    from dojo.compute.commands import add_commands as add_plan_commands

    add_plan_commands(sub)

    from dojo.service.commands import add_commands as add_service_commands

    add_service_commands(sub)

    from dojo.service.sched.commands import add_commands as add_sched_commands

    add_sched_commands(sub)

    bench = sub.add_parser(
        "bench", help="benchmarks: ours beside the reference, same run"
    ).add_subparsers(dest="bench_command", required=True)
    bw = bench.add_parser(
        "world", help="vehicle-steps/s vs highway-env highway-fast-v0, and camera frames/s"
    )
    bw.add_argument("--seconds", type=float, default=5.0, help="wall time per measurement [s]")
    bw.add_argument("--worlds", type=int, default=1024, help="worlds per batch (per process)")
    bw.add_argument("--json", action="store_true")
    bw.set_defaults(func=_bench_world)
    bd = bench.add_parser(
        "drive",
        help="fleet seconds per wall second and camera frames logged per second vs PyAV encoding alone",
    )
    bd.add_argument("--cars", type=int, default=8)
    bd.add_argument("--seconds", type=float, default=30.0, help="simulated seconds per car")
    bd.add_argument("--mode", default="manual", help="manual | shadow | autonomous | mixed")
    bd.add_argument("--json", action="store_true")
    bd.set_defaults(func=_bench_drive)
    bdata = bench.add_parser(
        "data",
        help="ingest frames/s vs mcap reading, loader vs raw PyAV decode, trigger query DuckDB vs pandas",
    )
    bdata.add_argument(
        "--parts",
        default="ingest,loader,query,autolabel",
        help="comma-separated: ingest, loader, query, autolabel",
    )
    bdata.add_argument(
        "--rows",
        type=int,
        default=10**8,
        help="telemetry rows for the query part (default 1e8, ~2.2 GB, cached)",
    )
    bdata.add_argument(
        "--cars", type=int, default=8, help="cars driven for the ingest and loader parts"
    )
    bdata.add_argument("--seconds", type=float, default=120.0, help="simulated seconds per car")
    bdata.add_argument("--repeats", type=int, default=3, help="runs per side; the fastest counts")
    add_ray_flag(bdata)  # ingest on Ray beside the local ingest
    bdata.add_argument("--json", action="store_true")
    bdata.set_defaults(func=_bench_data)
    btrain = bench.add_parser(
        "train", help="dojo train samples/s beside a bare PyTorch loop, FLOPs counted, MFU"
    )
    btrain.add_argument(
        "--sizes", default="tiny,base", help="comma-separated: tiny, base, large, xl"
    )
    btrain.add_argument("--steps", type=int, default=30)
    btrain.add_argument("--batch-size", type=int, default=32)
    btrain.add_argument("--json", action="store_true")
    btrain.set_defaults(func=_bench_train)
    beval = bench.add_parser(
        "eval", help="closed-loop decisions/s: the tiny vision policy beside naive"
    )
    beval.add_argument(
        "--decisions", type=int, default=24_000, help="decisions per side (at least 1000)"
    )
    beval.add_argument(
        "--cars", default="16,64", help="comma-separated cars a family, one row each"
    )
    beval.add_argument(
        "--device", default=None, help="torch device for the network (default: cuda if available)"
    )
    add_ray_flag(beval)
    beval.add_argument("--json", action="store_true")
    beval.set_defaults(func=_bench_eval)
    bnines = bench.add_parser(
        "nines", help="interval coverage and gate false refusals on simulated clustered evaluations"
    )
    bnines.add_argument("--trials", type=int, default=1000, help="simulated evaluations a row")
    bnines.add_argument("--seed", type=int, default=0)
    bnines.add_argument("--json", action="store_true")
    bnines.set_defaults(func=_bench_nines)
    bperc = bench.add_parser(
        "perception",
        help="drive, auto-label, train the perception heads for a budget, score held-out drives",
    )
    bperc.add_argument(
        "--minutes", type=float, default=20.0, help="training budget, wall clock [min]"
    )
    bperc.add_argument("--cars", type=int, default=8, help="cars driven on training seeds")
    bperc.add_argument(
        "--drive-minutes", type=float, default=3.0, help="simulated minutes per training car"
    )
    bperc.add_argument(
        "--heldout-cars", type=int, default=4, help="cars driven on held-out seeds (2 min each)"
    )
    bperc.add_argument("--json", action="store_true")
    bperc.set_defaults(func=_bench_perception)

    from dojo.compute.commands import add_bench_command as add_bench_plan

    add_bench_plan(bench)

    from dojo.bench.service import add_bench_command as add_bench_service

    add_bench_service(bench)

    from dojo.bench.replay import add_bench_command as add_bench_replay

    add_bench_replay(bench)

    from dojo.bench.sandbox import add_bench_command as add_bench_sandbox

    add_bench_sandbox(bench)

    from dojo.bench.gpu import add_bench_command as add_bench_gpu

    add_bench_gpu(bench)
    return parser


class _ResultStdout:
    """sys.stdout for a command: the main thread's writes (the result) go to stdout, any other
    thread's to stderr.

    A command's stdout is its result (`--json` output is piped into jq or json.loads), but
    libraries print from background threads of their own: Ray's driver prints a lost raylet's
    last log lines to sys.stdout from its error listener thread, mid-result.
    """

    def __init__(self, out: Any, err: Any) -> None:
        self._out, self._err = out, err

    def _target(self) -> Any:
        return self._out if threading.current_thread() is threading.main_thread() else self._err

    def write(self, text: str) -> int:
        return int(self._target().write(text))

    def flush(self) -> None:
        self._out.flush()
        self._err.flush()

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding...: the real stdout's
        return getattr(self._out, name)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    real_stdout = sys.stdout
    sys.stdout = _ResultStdout(real_stdout, sys.stderr)
    try:
        return int(args.func(args))
    except DojoError as err:  # bad input, a full disk, a refused request...
        print(f"dojo: error: {err}", file=sys.stderr)
        return 2
    finally:
        _disconnect_ray()  # its threads print until it shuts down, so before stdout is restored
        sys.stdout.flush()
        sys.stdout = real_stdout


def _disconnect_ray() -> None:
    """End this process's Ray connection, if a command made one (``--ray``)."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        with contextlib.redirect_stdout(sys.stderr):  # what it flushes on the way out
            ray.shutdown()


if __name__ == "__main__":
    raise SystemExit(main())
