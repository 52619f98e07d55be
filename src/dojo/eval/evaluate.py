"""Closed-loop evaluation: drive a policy on held-out scenarios and count what the safety driver did.

A *suite* is a set of scenario families with a held-out seed range [lo, hi) that no training
data ever uses (``dojo.world.scenarios.HELDOUT_SEEDS``). The built-in suite ``heldout`` covers
every family over the whole held-out range; users name their own in a TOML file::

    [suites.hazards]
    families = ["cut_in", "stalled"]
    seeds = [1000000, 1000500]   # [lo, hi): inside the held-out range

The policy drives in autonomous mode with the safety driver watching and logging off. Each
family gets its own fleet and an equal share of the decision budget: that makes per-family
counts exact (a car's family changes between drives) and every family equally weighted in the
overall figure. Each car-drive's counts are kept too (``families[f]["per_drive"]``): failures
cluster inside a drive, so the intervals take the drive as the unit (:mod:`dojo.eval.clustered`).

>>> result = evaluate("expert", decisions=2_000, cars=8)
>>> result["critical_interventions"], result["nines_low"]
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dojo.errors import DojoConfigError
from dojo.eval.clustered import METHOD, clustered_nines
from dojo.eval.nines import compare, nines
from dojo.fleet.config import DriveConfig
from dojo.fleet.drive import Fleet
from dojo.fleet.policy import Policy, make_policy
from dojo.fleet.pool import run_fleets
from dojo.fleet.safety import Intervention
from dojo.world.camera import CameraRig
from dojo.world.rigs import DEFAULT_RIG
from dojo.world.scenarios import FAMILIES, HELDOUT_SEEDS, TRAIN_SEEDS
from dojo.world.world import DT_S

BUILTIN_SUITE = "heldout"
DRIVE_S = DriveConfig.drive_s  # one scenario drive [s], the fleet's default
COUNT_KEYS = (
    "decisions",
    "miles",
    "critical_interventions",
    "noncritical_interventions",
    "collisions",
)
Progress = Callable[[int, int], None]  # (decisions done, decisions planned)


@dataclass(frozen=True)
class Suite:
    """Scenario families and the held-out seed range [seed_lo, seed_hi) they are drawn from."""

    name: str
    families: tuple[str, ...]
    seed_lo: int
    seed_hi: int

    def __post_init__(self) -> None:
        where = f"Suite {self.name!r}"
        if not self.families:
            raise DojoConfigError(f"{where} names no scenario family.")
        for fam in self.families:
            if fam not in FAMILIES:
                raise DojoConfigError(
                    f"{where}: unknown scenario family {fam!r}; choose from: {', '.join(FAMILIES)}."
                )
        if len(set(self.families)) != len(self.families):
            raise DojoConfigError(f"{where} names a scenario family twice: {list(self.families)}.")
        lo, hi = self.seed_lo, self.seed_hi
        if lo >= hi:
            raise DojoConfigError(
                f"{where}: seeds [{lo}, {hi}) is empty; give [lo, hi) with lo < hi."
            )
        if lo < TRAIN_SEEDS.stop and hi > TRAIN_SEEDS.start:
            raise DojoConfigError(
                f"{where}: seeds [{lo}, {hi}) overlap the training seed range "
                f"[{TRAIN_SEEDS.start}, {TRAIN_SEEDS.stop}); evaluation must use held-out seeds "
                f"[{HELDOUT_SEEDS.start}, {HELDOUT_SEEDS.stop})."
            )
        if lo < HELDOUT_SEEDS.start or hi > HELDOUT_SEEDS.stop:
            raise DojoConfigError(
                f"{where}: seeds [{lo}, {hi}) leave the held-out seed range "
                f"[{HELDOUT_SEEDS.start}, {HELDOUT_SEEDS.stop})."
            )

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "families": list(self.families),
            "seeds": [self.seed_lo, self.seed_hi],
        }


@dataclass(frozen=True)
class SuiteDriveConfig(DriveConfig):
    """A drive whose seeds wrap inside a suite's [suite_lo, suite_hi), not the whole held-out range."""

    suite_lo: int = HELDOUT_SEEDS.start
    suite_hi: int = HELDOUT_SEEDS.stop

    def drive_seed(self, car: int, drive: int) -> int:
        return self.suite_lo + (self.seed - self.suite_lo + drive * self.cars + car) % (
            self.suite_hi - self.suite_lo
        )


def builtin_suite() -> Suite:
    return Suite(BUILTIN_SUITE, FAMILIES, HELDOUT_SEEDS.start, HELDOUT_SEEDS.stop)


def _whole(where: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise DojoConfigError(f"{where}={value!r} must be a whole number.")
    return value


def load_suites(path: str | Path | None) -> dict[str, Suite]:
    """The built-in suite plus the ``[suites.NAME]`` tables of a TOML file (checked here)."""
    suites = {BUILTIN_SUITE: builtin_suite()}
    if path is None:
        return suites
    p = Path(path)
    if sys.version_info >= (3, 11):
        import tomllib as toml
    else:  # pragma: no cover - Python 3.10 only
        try:
            import tomli as toml
        except ModuleNotFoundError:
            raise DojoConfigError(
                f"Reading the suites file {p} needs Python 3.11 or the tomli package."
            ) from None
    try:
        data = toml.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DojoConfigError(f"Suites file {p} does not exist.") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DojoConfigError(f"Suites file {p} cannot be read ({e}).") from None
    except toml.TOMLDecodeError as e:
        raise DojoConfigError(f"Suites file {p} is not valid TOML ({e}).") from None
    tables = data.get("suites")
    if not isinstance(tables, dict) or not tables:
        raise DojoConfigError(f"Suites file {p} has no [suites.NAME] tables.")
    for name, table in tables.items():
        where = f"{p}: [suites.{name}]"
        if name == BUILTIN_SUITE:
            raise DojoConfigError(
                f"{where} redefines the built-in suite {BUILTIN_SUITE!r}; choose another name."
            )
        if not isinstance(table, dict):
            raise DojoConfigError(f"{where} must be a table with families and seeds.")
        unknown = sorted(set(table) - {"families", "seeds"})
        if unknown:
            raise DojoConfigError(f"{where} has unknown keys {unknown}; allowed: families, seeds.")
        families = table.get("families", list(FAMILIES))
        if not isinstance(families, list) or not all(isinstance(f, str) for f in families):
            raise DojoConfigError(f"{where}.families={families!r} must be a list of family names.")
        seeds = table.get("seeds")
        if not isinstance(seeds, list) or len(seeds) != 2:
            raise DojoConfigError(
                f"{where}.seeds={seeds!r} must be [lo, hi) inside the held-out range "
                f"[{HELDOUT_SEEDS.start}, {HELDOUT_SEEDS.stop})."
            )
        lo, hi = (_whole(f"{where}.seeds", s) for s in seeds)
        suites[name] = Suite(name, tuple(families), lo, hi)
    return suites


def get_suite(name: str, suites_file: str | Path | None = None) -> Suite:
    suites = load_suites(suites_file)
    if name not in suites:
        where = f" (defined: {', '.join(sorted(suites))})"
        raise DojoConfigError(
            f"Unknown suite {name!r}{where}; define it in a --suites-file as [suites.{name}]."
        )
    return suites[name]


def rates(counts: Mapping[str, Any]) -> dict[str, Any]:
    """Counts plus the figures derived from them; JSON-safe (None stands for an unbounded value).

    ``miles_per_critical_intervention`` is None with no critical intervention; ``nines_high`` is
    None when the interval's lower rate is 0 (no failures); ``nines`` is then the lower bound,
    flagged by ``nines_is_bound``.
    """
    out: dict[str, Any] = {k: counts[k] for k in COUNT_KEYS}
    k, n = int(counts["critical_interventions"]), int(counts["decisions"])
    out["miles_per_critical_intervention"] = out["miles"] / k if k else None
    est = nines(k, n)
    for key in ("nines", "nines_low", "nines_high"):
        out[key] = None if math.isinf(est[key]) else est[key]
    out["nines_is_bound"] = est["nines_is_bound"]
    out["critical_rate"] = est["rate"]
    out["critical_rate_low"], out["critical_rate_high"] = est["low"], est["high"]
    out["interval"] = est["interval"]
    return out


def clustered_fields(
    per_drive: Sequence[Mapping[str, Any]],
    strata: Sequence[str] | None = None,
    zero_design_effect: float = 1.0,
) -> dict[str, Any]:
    """The interval keys of a result from its per-drive counts (the drive is the unit).

    ``nines_low``/``nines_high``/``critical_rate_low``/``critical_rate_high`` come from
    :func:`dojo.eval.clustered.clustered_nines` (Korn-Graubard over drives); ``nines`` stays the
    point estimate, or the lower bound when there is no failure. Adds ``drives``,
    ``design_effect`` and ``interval_method``.
    """
    k = [int(d["critical_interventions"]) for d in per_drive]
    n = [int(d["decisions"]) for d in per_drive]
    est = clustered_nines(k, n, strata, zero_design_effect)
    out: dict[str, Any] = {
        key: None if math.isinf(est[key]) else est[key]
        for key in ("nines", "nines_low", "nines_high")
    }
    out["nines_is_bound"] = est["nines_is_bound"]
    out["critical_rate_low"], out["critical_rate_high"] = est["low"], est["high"]
    out["interval"] = est["interval"]
    out["interval_method"] = METHOD
    out["drives"] = est["drives"]
    out["design_effect"] = est["design_effect"]
    return out


def family_intervals(families: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """Set each family's interval keys from its ``per_drive`` rows; return the overall ones.

    The overall interval is stratified by family (each family had a fixed budget, so the
    differences between families are not noise); a failure-free family's rule of three
    borrows the whole evaluation's design effect (its own data cannot show one).
    """
    every = [d for f in families.values() for d in f["per_drive"]]
    strata = [fam for fam, f in families.items() for _ in f["per_drive"]]
    overall = clustered_fields(every, strata)
    for f in families.values():
        f.update(clustered_fields(f["per_drive"], zero_design_effect=overall["design_effect"]))
    return overall


def _check_budget(decisions: object, cars: object) -> tuple[int, int]:
    d, c = _whole("decisions", decisions), _whole("cars", cars)
    if d < 1:
        raise DojoConfigError(f"decisions={d} must be at least 1.")
    if c < 1:
        raise DojoConfigError(f"cars={c} must be at least 1.")
    return d, c


def plan(per_family: int, cars: int) -> tuple[int, int]:
    """(cars, steps) of one family's fleet: at least ``per_family`` decisions in whole drives.

    Hazards happen at set times inside a scenario, so a drive cut short would skip them and
    flatter the policy: every car drives whole ``DRIVE_S`` drives. All ``cars`` cars drive,
    even when fewer would reach the budget: a fleet step costs about the same wall time for 1
    car as for 16 (measured: ~2.5 ms per step either way), so the extra decisions are free.
    """
    drive_steps = round(DRIVE_S / DT_S)
    return cars, math.ceil(per_family / (cars * drive_steps)) * drive_steps


class _TallyFleet(Fleet):
    """A fleet that also keeps each car-drive's critical interventions and decisions.

    The drive, not the decision, is the independent unit of an evaluation (critical
    interventions cluster inside a scenario), so the clustered intervals and the gate need
    per-drive counts. The fleet counts in aggregate; this subclass listens at the two places a
    drive's counts change (an intervention counted, a drive ended) and leaves the stepping alone.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        n = self.n
        self.critical_now = np.zeros(n, dtype=np.int64)  # the running drive of each car
        self.seed_now = [int(s) for s in self.world.seeds]
        self.ended: list[tuple[int, int, int, int, int]] = []  # (car, drive, seed, k, n)

    def _count_intervention(self, iv: Intervention) -> None:
        super()._count_intervention(iv)
        if iv.critical:
            self.critical_now[iv.car] += 1

    def _next_drives(self, cars: np.ndarray) -> None:
        for c in cars.tolist():
            self._close_drive(int(c))
        super()._next_drives(cars)
        for c in cars.tolist():
            self.seed_now[c] = int(self.world.seeds[c])

    def _close_drive(self, car: int) -> None:
        steps = int(self.world.step_count[car])  # one decision per step of this drive
        k = int(self.critical_now[car])
        self.ended.append((car, int(self.drive_no[car]), self.seed_now[car], k, steps))
        self.critical_now[car] = 0

    def per_drive(self) -> list[dict[str, int]]:
        """Every car-drive's counts, the running (budget-cut) last drives included."""
        rows = list(self.ended)
        for c in range(self.n):
            if self.world.step_count[c] > 0:
                rows.append(
                    (
                        c,
                        int(self.drive_no[c]),
                        self.seed_now[c],
                        int(self.critical_now[c]),
                        int(self.world.step_count[c]),
                    )
                )
        s = self.summary
        if (
            sum(r[3] for r in rows) != s.critical_interventions
            or sum(r[4] for r in rows) != s.decisions
        ):  # the fleet counted somewhere these hooks do not see
            raise AssertionError("per-drive counts do not add up to the fleet's summary")
        ids = self.car_ids  # a batch's cars by their number in the whole fleet
        rows = sorted((int(ids[c]), d, seed, k, n) for c, d, seed, k, n in rows)
        return [
            {"car": c, "drive": d, "seed": seed, "critical_interventions": k, "decisions": n}
            for c, d, seed, k, n in rows
        ]

    @staticmethod
    def merge_per_drive(parts: list[list[dict[str, int]]]) -> list[dict[str, int]]:
        """The whole fleet's per-drive rows from its batches' (each car in one batch)."""
        return sorted((r for p in parts for r in p), key=lambda r: (r["car"], r["drive"]))


def evaluate(
    policy: str,
    suite: str = BUILTIN_SUITE,
    decisions: int = 10_000,
    cars: int = 16,
    seed: int | None = None,
    suites_file: str | Path | None = None,
    progress: Progress | None = None,
    loaded: Policy | None = None,
    rig: str = DEFAULT_RIG,
    workers: int | None = None,
    ray: str | None = None,
    batch_cars: int = 0,
) -> dict[str, Any]:
    """Drive ``policy`` (naive | expert | careful | checkpoint path) on ``suite`` for at least
    ``decisions``, the cars carrying the camera rig named ``rig``.

    Each family gets ceil(decisions / families) decisions on ``cars`` cars, rounded up to whole
    drives (see :func:`plan`). Car c's k-th drive uses seed ``seed + k * cars + c`` (default: the
    suite's first seed), wrapping inside the suite's range, so every seed is held out;
    ``families[f]["seeds_repeated"]`` says whether a family's drives outnumbered its seeds.
    Every input (suite, budget, policy, checkpoint rig) is checked before the first car moves.
    ``loaded``: an already loaded policy (the loop evaluates a
    model it holds); ``policy`` then only names it. ``workers``: processes the families drive
    in at once (default: one a core); ``ray``: a Ray cluster's address to drive them on instead,
    each family's fleet in batches of cars where that changes no count (a baseline's: see
    :func:`dojo.fleet.pool.run_fleets`). The counts depend on neither.
    """
    decisions, cars = _check_budget(decisions, cars)
    st = get_suite(suite, suites_file)
    first = st.seed_lo if seed is None else _whole("seed", seed)
    if not st.seed_lo <= first < st.seed_hi:
        raise DojoConfigError(
            f"seed={first} is outside suite {st.name!r}'s seeds [{st.seed_lo}, {st.seed_hi})."
        )
    fleet_cars, steps = plan(math.ceil(decisions / len(st.families)), cars)
    configs = [
        SuiteDriveConfig(
            cars=fleet_cars,
            minutes=steps * DT_S / 60.0,
            mode="autonomous",
            policy=policy,
            families=(fam,),
            seed=first,
            out="eval-unused",
            logging="none",
            heldout=True,
            suite_lo=st.seed_lo,
            suite_hi=st.seed_hi,
            rig=rig,
            batch_cars=batch_cars,  # how Ray splits the fleet (DriveConfig.batches)
        )
        for fam in st.families
    ]
    if configs[0].steps != steps:  # minutes round-trips to steps; guard the budget arithmetic
        raise AssertionError(f"fleet steps {configs[0].steps} != planned {steps}")
    if loaded is None:
        cfg = configs[0]
        loaded = make_policy(
            policy,
            CameraRig.named(cfg.rig, rgb=cfg.rgb, width=cfg.camera_width, height=cfg.camera_height),
        )
    planned = steps * fleet_cars * len(st.families)
    start = time.perf_counter()
    families: dict[str, dict[str, Any]] = {}
    reasons: dict[str, int] = {}

    def tick(done: int) -> None:
        if progress is not None:
            progress(done, planned)

    # the families' fleets are independent: they drive at once, a process a core (dojo.fleet.pool)
    runs = run_fleets(
        configs,
        loaded,
        workers,
        tick,
        fleet_type=_TallyFleet,
        collect=_TallyFleet.per_drive,
        ray=ray,
        merge_extra=_TallyFleet.merge_per_drive,
    )
    for cfg, fleet in zip(configs, runs, strict=True):
        summary = fleet.summary
        fam = cfg.families[0]
        families[fam] = rates(summary.as_dict())
        families[fam]["cars"] = fleet_cars
        # seeds are drawn in order from `first`, wrapping inside the suite: more drives than
        # seeds means some scenarios were driven twice (still held out, but not independent)
        offsets = fleet.drive_no * fleet_cars + np.arange(
            fleet_cars
        )  # each car's last seed, counted from `first`
        families[fam]["seeds_repeated"] = int(offsets.max()) + 1 > st.seed_hi - st.seed_lo
        families[fam]["per_drive"] = fleet.extra
        for key, v in summary.reasons.items():
            reasons[key] = reasons.get(key, 0) + v
    overall = family_intervals(families)
    totals = {k: sum(f[k] for f in families.values()) for k in COUNT_KEYS}
    result = {
        "policy": policy,
        "rig": rig,
        "suite": st.name,
        "suite_definition": st.as_dict(),
        "cars": cars,
        "drive_s": DRIVE_S,
        "decisions_requested": decisions,
        **rates(totals),
        **overall,
        "reasons": reasons,
        "families": families,
        "wall_s": time.perf_counter() - start,
    }
    return result


def compare_results(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Whether a's and b's critical rates (critical interventions per decision) differ significantly."""
    for name, r in (("a", a), ("b", b)):
        for key in ("critical_interventions", "decisions"):
            if key not in r:
                raise DojoConfigError(
                    f"Result {name} has no {key!r}; give an evaluation result (dojo eval --json)."
                )
    out = compare(
        int(a["critical_interventions"]),
        int(a["decisions"]),
        int(b["critical_interventions"]),
        int(b["decisions"]),
    )
    out["a"]["policy"], out["b"]["policy"] = a.get("policy"), b.get("policy")
    if a.get("suite") != b.get("suite"):
        out["warning"] = (
            f"the results come from different suites ({a.get('suite')!r} and {b.get('suite')!r})"
        )
    return out


# ---------------------------------------------------------------------------- formatting
def _fmt_nines(r: Mapping[str, Any]) -> str:
    high = "inf" if r["nines_high"] is None else f"{r['nines_high']:.2f}"
    point = (">=" if r["nines_is_bound"] else "") + f"{r['nines']:.2f}"
    return f"{point:>7} [{r['nines_low']:.2f}, {high}]"


def format_eval(result: Mapping[str, Any]) -> str:
    """A table per family and overall: decisions, miles, interventions, collisions, nines [95%]."""
    head = (
        f"{'family':<11}{'decisions':>11}{'miles':>9}{'critical':>10}{'non-crit':>10}{'crashes':>9}"
        f"{'mi/crit':>9}  nines [95%]"
    )
    lines = [
        f"policy {result['policy']} on suite {result['suite']} "
        f"({result['cars']} cars, {result['wall_s']:.1f} s)",
        head,
        "-" * len(head),
    ]

    def row(name: str, r: Mapping[str, Any]) -> str:
        mpc = (
            "-"
            if r["miles_per_critical_intervention"] is None
            else f"{r['miles_per_critical_intervention']:.1f}"
        )
        return (
            f"{name:<11}{r['decisions']:>11,}{r['miles']:>9.1f}{r['critical_interventions']:>10,}"
            f"{r['noncritical_interventions']:>10,}{r['collisions']:>9,}{mpc:>9}  {_fmt_nines(r)}"
        )

    for fam, r in result["families"].items():
        lines.append(row(fam, r))
    lines.append("-" * len(head))
    lines.append(row("overall", result))
    lines.append(
        "nines = -log10(critical/decisions); 95% interval with the drive as the unit "
        "(Korn-Graubard, docs/eval.md); with no critical intervention, >= is the rule-of-three "
        "bound over the effective decisions."
    )
    return "\n".join(lines)


def format_compare(c: Mapping[str, Any]) -> str:
    a, b = c["a"], c["b"]
    verdict = "significant" if c["significant"] else "not significant"
    lines = [
        f"a: {a.get('policy')}: {a['critical']:,} critical in {a['decisions']:,} decisions (rate {a['rate']:.3g})",
        f"b: {b.get('policy')}: {b['critical']:,} critical in {b['decisions']:,} decisions (rate {b['rate']:.3g})",
        f"difference in critical rate: {verdict} (Fisher exact, two-sided p = {c['p_value']:.3g}, alpha {c['alpha']:g})"
        + (f"; {c['better']} is safer" if c["better"] else ""),
    ]
    if "warning" in c:
        lines.append(f"warning: {c['warning']}")
    return "\n".join(lines)
