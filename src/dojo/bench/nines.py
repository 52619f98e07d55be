"""`dojo bench nines`: do the intervals cover, and does the gate refuse a model no worse?

Simulated evaluations with a known critical rate, shaped like Dojo's: ``drives`` drives
(scenarios) of ``drive_decisions`` decisions each. Clustering is a per-drive rate drawn from a
gamma distribution with mean ``rate`` and shape ``shape`` (the overdispersion: a drive's
failures are Poisson-gamma, so the design effect is about 1 + drive_decisions * rate / shape;
``shape=inf`` is independent decisions). Three measurements:

- **coverage**: the share of trials whose 95% interval holds the true rate, for the old
  Clopper-Pearson over decisions (:func:`dojo.eval.nines.nines`), the new Korn-Graubard over
  drives (:func:`dojo.eval.clustered.clustered_nines`) and a cluster bootstrap.
- **width**: at a fixed number of decisions, the median width in nines of the new interval
  with more, shorter drives or fewer, longer ones.
- **gate**: the share of candidates refused by the promotion gate when candidate and
  incumbent have the same true rates per family (a false refusal), old gate and new, and the
  paired variant (same scenarios for both).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from dojo.bench.machine import machine_info
from dojo.eval.clustered import cluster_bootstrap, clustered_nines
from dojo.eval.evaluate import family_intervals
from dojo.eval.nines import compare, nines
from dojo.loop.gate import gate
from dojo.validate import number, whole

RATES = (1e-3, 3e-3, 5e-3)
SHAPES = (math.inf, 1.0, 0.2)  # independent, moderate (deff ~2), strong (deff ~7 at 3e-3)
REGRESSIONS = (2.0, 3.0)  # the candidate's rate in one family, times the incumbent's
FAMILIES = ("highway", "merge", "lane_drop", "cut_in", "stalled", "dense")


def simulate(
    rng: np.random.Generator,
    rate: float,
    shape: float,
    drives: int,
    drive_decisions: int,
    trials: int = 1,
    drive_rates: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(k, n), each (trials, drives): per-drive critical counts and decisions.

    ``drive_rates`` (trials, drives): reuse these per-drive rates (the same scenarios driven
    again, as a paired evaluation does) instead of drawing new ones.
    """
    if drive_rates is None:
        drive_rates = scenario_rates(rng, rate, shape, (trials, drives))
    n = np.full(drive_rates.shape, drive_decisions, dtype=np.int64)
    k = rng.binomial(n, np.minimum(drive_rates, 1.0))
    return k, n


def scenario_rates(
    rng: np.random.Generator, rate: float, shape: float, size: tuple[int, ...]
) -> np.ndarray:
    """Per-drive true rates: gamma with mean ``rate`` and shape ``shape`` (constant at inf)."""
    if math.isinf(shape):
        return np.full(size, rate)
    return rng.gamma(shape, rate / shape, size)


def coverage(
    rate: float,
    shape: float,
    drives: int = 96,
    drive_decisions: int = 400,
    trials: int = 2000,
    seed: int = 0,
    bootstrap: bool = True,
) -> dict[str, Any]:
    """Share of ``trials`` whose 95% interval holds ``rate``: old, new and bootstrap."""
    rate = number("rate", rate, 0.0, 1.0, low_open=True, high_open=True)
    shape = number("shape", shape, 0.0, low_open=True) if not math.isinf(shape) else shape
    drives, drive_decisions = (
        whole("drives", drives, 1),
        whole("drive_decisions", drive_decisions, 1),
    )
    trials = whole("trials", trials, 1)
    rng = np.random.default_rng(seed)
    k, n = simulate(rng, rate, shape, drives, drive_decisions, trials)
    hits = {"clopper_pearson": 0, "korn_graubard": 0, "bootstrap": 0}
    widths: list[float] = []
    for t in range(trials):
        old = nines(int(k[t].sum()), int(n[t].sum()))
        new = clustered_nines(k[t], n[t])
        hits["clopper_pearson"] += old["low"] <= rate <= old["high"]
        hits["korn_graubard"] += new["low"] <= rate <= new["high"]
        widths.append(new["nines_high"] - new["nines_low"] if new["low"] > 0 else math.nan)
        if bootstrap:
            lo, hi = cluster_bootstrap(k[t], n[t], replicates=1000, seed=seed + t)
            hits["bootstrap"] += lo <= rate <= hi
    out: dict[str, Any] = {
        "rate": rate,
        "shape": shape,
        "drives": drives,
        "drive_decisions": drive_decisions,
        "trials": trials,
        "design_effect": 1.0 + (0.0 if math.isinf(shape) else drive_decisions * rate / shape),
        "coverage": {m: h / trials for m, h in hits.items() if bootstrap or m != "bootstrap"},
        "median_width_nines": float(np.nanmedian(widths)) if not np.isnan(widths).all() else None,
    }
    return out


def _result(k: np.ndarray, n: np.ndarray, seeds: Sequence[int]) -> dict[str, Any]:
    """An evaluation result (the keys the gate reads) from (families, drives) counts."""
    fams: dict[str, dict[str, Any]] = {}
    for f, fam in enumerate(FAMILIES[: k.shape[0]]):
        rows = [
            {"seed": int(s), "critical_interventions": int(a), "decisions": int(b)}
            for s, a, b in zip(seeds, k[f], n[f], strict=True)
        ]
        fams[fam] = {
            "per_drive": rows,
            "critical_interventions": int(k[f].sum()),
            "decisions": int(n[f].sum()),
        }
    return {
        "suite": "heldout",
        "critical_interventions": int(k.sum()),
        "decisions": int(n.sum()),
        **family_intervals(fams),
        "families": fams,
    }


def old_gate(candidate: dict[str, Any], incumbent: dict[str, Any]) -> tuple[bool, bool]:
    """(refused, refused by a family) of the gate before the drive was the unit: Clopper-Pearson
    lower bounds over decisions, Fisher on raw counts per family at 0.05, no correction."""
    low = [
        nines(r["critical_interventions"], r["decisions"])["nines_low"]
        for r in (candidate, incumbent)
    ]
    fam = False
    for name, inc in incumbent["families"].items():
        cand = candidate["families"][name]
        test = compare(
            cand["critical_interventions"],
            cand["decisions"],
            inc["critical_interventions"],
            inc["decisions"],
        )
        fam |= bool(test["significant"] and test["better"] == "b")
    return low[0] < low[1] or fam, fam


def false_refusals(
    rate: float,
    shape: float,
    families: int = 6,
    drives: int = 16,
    drive_decisions: int = 400,
    trials: int = 1000,
    seed: int = 0,
    regression: float = 1.0,
) -> dict[str, Any]:
    """Share of trials where the gate refuses a candidate with the incumbent's true rates.

    ``regression`` > 1 makes it a power measurement: the candidate's rate in the first family
    is that many times the incumbent's (every scenario of it equally harder).

    Family f's mean rate is ``rate`` scaled by 0.5..1.5 across families (they differ in
    difficulty). ``old``: the gate before the drive was the unit (Fisher per family at alpha,
    no correction); ``new``: Holm-corrected design-effect Fisher; ``new_paired``: the paired
    test, candidate and incumbent driving the same scenarios. ``*_families`` counts the
    refusals from the family tests alone (the overall lower-bound rule set aside).
    """
    rng = np.random.default_rng(seed)
    scale = np.linspace(0.5, 1.5, families)[:, None]
    seeds = list(range(drives))
    counts = {
        k: 0
        for k in ("old", "new", "new_paired", "old_families", "new_families", "new_paired_families")
    }
    for _ in range(trials):
        lam = np.stack(
            [scenario_rates(rng, rate * float(s), shape, (drives,)) for s in scale[:, 0]]
        )
        k_inc, n_inc = simulate(rng, rate, shape, drives, drive_decisions, drive_rates=lam)
        worse = np.ones((families, 1))
        worse[0] = regression
        k_same, n_same = simulate(
            rng, rate, shape, drives, drive_decisions, drive_rates=lam * worse
        )
        lam2 = np.stack(
            [scenario_rates(rng, rate * float(s), shape, (drives,)) for s in scale[:, 0]]
        )
        lam2 *= worse
        k_new, n_new = simulate(rng, rate, shape, drives, drive_decisions, drive_rates=lam2)
        inc, same, other = (
            _result(a, b, seeds) for a, b in ((k_inc, n_inc), (k_same, n_same), (k_new, n_new))
        )
        old, old_fam = old_gate(other, inc)
        new = gate(other, inc)
        paired = gate(same, inc, paired=True)
        counts["old"] += old
        counts["new"] += not new.promoted
        counts["new_paired"] += not paired.promoted
        counts["old_families"] += old_fam
        counts["new_families"] += bool(new.regressions)
        counts["new_paired_families"] += bool(paired.regressions)
    return {
        "rate": rate,
        "shape": shape,
        "families": families,
        "drives_per_family": drives,
        "drive_decisions": drive_decisions,
        "trials": trials,
        "regression": regression,
        "refused": {k: v / trials for k, v in counts.items()},
    }


def drive_length(
    rate: float,
    shape: float,
    total_decisions: int = 38_400,
    drive_decisions: Sequence[int] = (100, 200, 400, 800, 1600),
    trials: int = 1000,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Median width (nines) of the new interval at one decision budget, split into drives of
    each length in ``drive_decisions`` (the per-drive rate model does not change with length).
    """
    rows = []
    for nd in drive_decisions:
        r = coverage(rate, shape, max(1, total_decisions // nd), nd, trials, seed, bootstrap=False)
        rows.append(
            {
                "drive_decisions": nd,
                "drives": r["drives"],
                "median_width_nines": r["median_width_nines"],
                "coverage": r["coverage"]["korn_graubard"],
            }
        )
    return rows


def bench_nines(trials: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Every measurement of the module docstring at Dojo's sizes (96 drives of 400 decisions)."""
    trials = whole("trials", trials, 10)
    return {
        "machine": machine_info(),
        "coverage": [coverage(r, s, trials=trials, seed=seed) for r in RATES for s in SHAPES],
        "coverage_per_family": [
            coverage(3e-3, s, drives=16, trials=trials, seed=seed) for s in SHAPES
        ],
        "gate": [false_refusals(3e-3, s, trials=max(10, trials // 2), seed=seed) for s in SHAPES],
        "gate_power": [
            false_refusals(3e-3, s, trials=max(10, trials // 2), seed=seed, regression=x)
            for s in SHAPES
            for x in REGRESSIONS
        ],
        "drive_length": {str(s): drive_length(3e-3, s, trials=trials, seed=seed) for s in SHAPES},
    }


def _shape(s: float) -> str:
    return "inf" if math.isinf(s) else f"{s:g}"


def format_bench_nines(result: dict[str, Any]) -> str:
    lines = [
        "coverage of the 95% interval (share of trials holding the true rate)",
        f"{'rate':>7} {'shape':>6} {'deff':>5} {'drives':>6} {'CP decisions':>13} "
        f"{'KG drives':>10} {'bootstrap':>10}",
    ]
    for r in result["coverage"] + result["coverage_per_family"]:
        c = r["coverage"]
        lines.append(
            f"{r['rate']:>7.0e} {_shape(r['shape']):>6} {r['design_effect']:>5.1f} {r['drives']:>6} "
            f"{c['clopper_pearson']:>13.3f} {c['korn_graubard']:>10.3f} {c.get('bootstrap', math.nan):>10.3f}"
        )
    lines += [
        "",
        "gate: share refusing a candidate with the same true rates (families only in ())",
        f"{'rate':>7} {'shape':>6} {'old':>14} {'new':>14} {'new paired':>14}",
    ]
    for g in result["gate"]:
        f = g["refused"]
        lines.append(
            f"{g['rate']:>7.0e} {_shape(g['shape']):>6} "
            + " ".join(
                f"{f[m]:>6.3f} ({f[m + '_families']:.3f})" for m in ("old", "new", "new_paired")
            )
        )
    lines += [
        "",
        "gate power: share refusing a candidate whose easiest family regressed (family tests)",
        f"{'shape':>6} {'times':>6} {'old':>7} {'new':>7} {'paired':>7}",
    ]
    for g in result["gate_power"]:
        f = g["refused"]
        lines.append(
            f"{_shape(g['shape']):>6} {g['regression']:>6g} {f['old_families']:>7.3f} "
            f"{f['new_families']:>7.3f} {f['new_paired_families']:>7.3f}"
        )
    lines += ["", "drive length at 38,400 decisions: median width of the interval [nines]"]
    for s, rows in result["drive_length"].items():
        lines.append(
            f"shape {s:>4}: "
            + "  ".join(
                f"{r['drives']}x{r['drive_decisions']} {r['median_width_nines']:.3f}" for r in rows
            )
        )
    return "\n".join(lines)


__all__ = [
    "bench_nines",
    "coverage",
    "drive_length",
    "false_refusals",
    "format_bench_nines",
    "simulate",
]
