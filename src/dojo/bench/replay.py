"""``dojo bench replay``: how faithful and how fast replaying logged moments is.

One run drives a manual fleet over every family (scene channel, no video), then:

- *re-simulation*: every log rebuilt from its scenario and logged actions over the whole drive;
  the largest distance between a replayed and a logged vehicle (0.0: bit for bit);
- *from the scene*: at moments every ``spacing_s`` the scene alone starts a world (each object
  given the default driver, :data:`dojo.world.drivers.TRAFFIC_DRIVER`), the ego follows its logged
  actions, and the traffic's distance to the log is taken 1, 5 and 10 s later, per family;
- *speed*: replaying moments with the naive policy (reaching each moment counted in), one at a
  time (``dojo replay``) and as a suite of ``suite_moments`` moments (``dojo eval --suite``:
  batched), in decisions per second, beside `dojo eval`'s decisions per second for the same
  policy; the suite's wall time is the issue's target (1,000 moments in 10 minutes).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from dojo.bench.machine import machine_info
from dojo.world.world import DT_S

HORIZONS_S = (1.0, 5.0, 10.0)


def bench_replay(
    cars: int = 12,
    minutes: float = 1.0,
    spacing_s: float = 10.0,
    speed_moments: int = 12,
    suite_moments: int = 1000,
) -> dict[str, Any]:
    """See the module doc; the result is what ``--json`` prints."""
    from dojo.data.ingest import ingest
    from dojo.eval.evaluate import evaluate
    from dojo.eval.replay import replay
    from dojo.eval.resim import from_scene, load_drive, resimulate
    from dojo.eval.suite import evaluate_suite
    from dojo.fleet.config import DriveConfig
    from dojo.fleet.drive import drive

    with tempfile.TemporaryDirectory(prefix="dojo-bench-replay-") as tmp:
        summary = drive(
            DriveConfig(cars=cars, minutes=minutes, mode="manual", out=tmp, logging="triggers")
        )
        drives = [load_drive(f) for f in sorted(summary.files)]
        drives = [d for d in drives if len(d.t_s)]

        tick, steps, worst = time.perf_counter(), 0, 0.0
        for d in drives:
            rep = resimulate(d, d.duration_s)
            steps += rep.step
            worst = max(worst, rep.max_deviation_m, float(rep.unpaired))
        resim_steps_per_s = steps / (time.perf_counter() - tick)

        drift: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
        unpaired: dict[str, list[float]] = defaultdict(list)
        horizon = int(round(max(HORIZONS_S) / DT_S))
        for d in drives:
            t = spacing_s / 2
            while t + max(HORIZONS_S) <= d.duration_s + 1e-9:
                rep = from_scene(d, t)
                for k in range(1, horizon + 1):
                    rep.follow()
                    for h in HORIZONS_S:
                        if k == round(h / DT_S):
                            dist, lost = rep.distances_m(ego=False)
                            drift[str(d.family)][h] += dist.tolist()
                            if h == max(HORIZONS_S):
                                unpaired[str(d.family)].append(lost / max(len(dist) + lost, 1))
                t += spacing_s

        moments = [(d, d.duration_s / 2) for d in drives][:speed_moments]
        tick, decisions = time.perf_counter(), 0
        for d, t in moments:
            decisions += replay(d.path, t, seconds=10.0, policy="naive").decisions
        replay_s = time.perf_counter() - tick
        reached = sum(round(t / DT_S) for _, t in moments)  # steps re-simulated to reach them

        ingest(summary.files, f"{tmp}/store", workers=1)
        suite = _sampled_suite(f"{tmp}/store", suite_moments)
        tick = time.perf_counter()
        ran = evaluate_suite("naive", suite)
        suite_s = time.perf_counter() - tick

    tick = time.perf_counter()
    ev = evaluate("naive", decisions=9_600)  # dojo eval's default fleets (16 cars a family)
    eval_per_s = ev["decisions"] / (time.perf_counter() - tick)
    replay_per_s = decisions / replay_s
    families = {
        fam: {
            **{
                f"drift_{h:g}s_m": {
                    "median": float(np.median(v[h])) if v[h] else None,
                    "p90": float(np.percentile(v[h], 90)) if v[h] else None,
                    "max": float(np.max(v[h])) if v[h] else None,
                    "vehicles": len(v[h]),
                }
                for h in HORIZONS_S
            },
            "unpaired_share_10s": float(np.mean(unpaired[fam])) if unpaired[fam] else None,
        }
        for fam, v in sorted(drift.items())
    }
    return {
        "machine": machine_info(),
        "logs": len(drives),
        "resim_steps": steps,
        "resim_max_deviation_m": worst,
        "resim_steps_per_s": resim_steps_per_s,
        "from_scene": families,
        "replay_moments": len(moments),
        "replay_decisions_per_s": replay_per_s,
        "replay_steps_reached": reached,
        "eval_decisions_per_s": eval_per_s,
        "replay_cost_ratio": eval_per_s / replay_per_s,  # > 1: a replayed decision costs more
        "suite_moments": ran["moments_run"],
        "suite_wall_s": suite_s,
        "suite_decisions_per_s": ran["decisions"] / suite_s,
        "suite_cost_ratio": eval_per_s / (ran["decisions"] / suite_s),
        "suite_1000_moments_min": suite_s / max(ran["moments_run"], 1) * 1000 / 60,
        "meets_suite_target": suite_s / max(ran["moments_run"], 1) * 1000 <= 600,
    }


def _sampled_suite(store: str, n: int) -> Any:
    """``n`` moments spread evenly over the store's drive time (a speed test needs no trigger)."""
    from dojo.data.catalog import connect
    from dojo.eval.suite import Moment, MomentSuite

    drives = (
        connect(store)
        .execute(
            "SELECT drive_id, source, duration_s FROM drives WHERE duration_s > 1 ORDER BY drive_id"
        )
        .fetchall()
    )
    total = sum(d for _, _, d in drives)
    moments = []
    for i in range(n):
        at = (i + 0.5) * total / n
        for drive_id, source, duration in drives:
            if at < duration:
                moments.append(Moment(drive_id, round(at, 1), "sample", source))
                break
            at -= duration
    return MomentSuite(store, tuple(moments))


def format_replay_bench(r: dict[str, Any]) -> str:
    lines = [
        f"re-simulation: {r['logs']} logs, {r['resim_steps']} steps, max deviation "
        f"{r['resim_max_deviation_m']:g} m, {r['resim_steps_per_s']:.0f} steps/s",
        "from the scene: traffic distance to the log [m], median / p90 at 1, 5, 10 s",
    ]
    for fam, f in r["from_scene"].items():
        parts = [
            f"{f[f'drift_{h:g}s_m']['median']:.2f} / {f[f'drift_{h:g}s_m']['p90']:.2f}"
            for h in HORIZONS_S
            if f[f"drift_{h:g}s_m"]["median"] is not None
        ]
        lines.append(f"  {fam:10s} " + "   ".join(parts))
    lines.append(
        f"speed: replay {r['replay_decisions_per_s']:.0f} decisions/s ({r['replay_moments']} "
        f"moments, reaching them included), eval {r['eval_decisions_per_s']:.0f} decisions/s, "
        f"a replayed decision costs {r['replay_cost_ratio']:.2f}x an evaluated one"
    )
    lines.append(
        f"suite: {r['suite_moments']} moments in {r['suite_wall_s']:.1f} s "
        f"({r['suite_decisions_per_s']:.0f} decisions/s, {r['suite_cost_ratio']:.2f}x eval's "
        f"cost a decision); 1,000 moments: {r['suite_1000_moments_min']:.1f} min "
        f"(target 10: {'met' if r['meets_suite_target'] else 'missed'})"
    )
    return "\n".join(lines)


def _bench(args: argparse.Namespace) -> int:
    result = bench_replay(cars=args.cars, minutes=args.minutes, suite_moments=args.moments)
    print(json.dumps(result, indent=2) if args.json else format_replay_bench(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


def add_bench_command(bench: argparse._SubParsersAction) -> None:
    """Register ``replay`` under ``dojo bench``."""
    b = bench.add_parser(
        "replay",
        help="replay fidelity (re-simulation, drift from a scene) and speed beside dojo eval",
    )
    b.add_argument("--cars", type=int, default=12, help="manual cars driven for logs")
    b.add_argument("--minutes", type=float, default=1.0, help="simulated minutes per car")
    b.add_argument("--moments", type=int, default=1000, help="moments of the suite speed test")
    b.add_argument("--out", default=None, help="also write the JSON result to this file")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=_bench)
