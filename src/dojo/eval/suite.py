"""Regression suites of fleet moments: the takeovers and collisions a new network must pass.

A suite is a TOML file naming a clip store and moments in it (drive id, drive time, trigger).
``dojo suite from-store`` writes one from the store's events; ``dojo eval --suite SUITE.toml``
drives each moment from ``before_s`` ahead of it for ``seconds`` with a policy (the world
re-simulated exactly to that point, :func:`dojo.eval.resim.resimulate_batch`, all moments in
batches) and reports, per moment, whether it passed: no critical intervention and no
collision. Nines over the suite take the moment as the unit of the clustered interval.

::

    version = 1
    store = "/data/store"
    before_s = 5.0
    seconds = 10.0

    [[moments]]
    drive = "03fc97d14bd39959ff5aca9d"
    t_s = 23.4
    trigger = "critical_intervention"
    source = "car001-drive0000-stalled-1.mcap"
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dojo.errors import ConfigError, DojoError
from dojo.eval.resim import LoggedDrive, load_stored_drive, resimulate_batch
from dojo.world.world import DT_S

VERSION = 1
DEFAULT_TRIGGERS = ("critical_intervention", "collision")
DEFAULT_BEFORE_S = 5.0
DEFAULT_SECONDS = 10.0
BATCH = 256  # moments driven as one batch of worlds


@dataclass(frozen=True)
class Moment:
    drive: str  # the store's drive id
    t_s: float  # [s] drive time of the trigger
    trigger: str
    source: str = ""  # the log file it was ingested from (for people; not needed to replay)


@dataclass(frozen=True)
class MomentSuite:
    store: str
    moments: tuple[Moment, ...]
    before_s: float = DEFAULT_BEFORE_S  # [s] the replay starts this long before each moment
    seconds: float = DEFAULT_SECONDS  # [s] and drives this long
    skipped: tuple[str, ...] = field(default=())  # entries of the file that could not be read

    def __post_init__(self) -> None:
        for name in ("before_s", "seconds"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"Suite {name}={value!r} must be a number of seconds >= 0.")
        if not self.seconds > 0:
            raise ConfigError(f"Suite seconds={self.seconds!r} must be > 0.")


def suite_from_store(
    store: str | os.PathLike[str],
    triggers: Sequence[str] = DEFAULT_TRIGGERS,
    before_s: float = DEFAULT_BEFORE_S,
    seconds: float = DEFAULT_SECONDS,
) -> MomentSuite:
    """Every moment of the store's drives that one of ``triggers`` marks, in drive-time order."""
    from dojo.data.catalog import connect
    from dojo.data.triggers import BUILTIN, run_trigger

    names = list(triggers)
    for name in names:  # the data engine's triggers (dojo.data.triggers), one name each
        if name not in BUILTIN:
            raise ConfigError(f"trigger={name!r} must be one of {', '.join(sorted(BUILTIN))}.")
    if not names:
        raise ConfigError("Give at least one trigger.")
    MomentSuite(str(store), (), before_s, seconds)  # the numbers checked before any work
    con = connect(store)
    sources = dict(con.execute("SELECT drive_id, source FROM drives").fetchall())
    found = sorted(
        (drive, t_s, name) for name in names for drive, t_s in run_trigger(con, name)
    )  # by drive and time (and trigger name at one time)
    moments: list[Moment] = []
    for drive_id, t_s, trigger in found:
        last = moments[-1] if moments else None
        # one incident (a takeover, then the collision it could not prevent) is one moment: a
        # replay from before_s ahead of the first drives through the rest
        if last is not None and last.drive == drive_id and t_s - last.t_s < before_s:
            continue
        moments.append(Moment(drive_id, t_s, trigger, str(sources.get(drive_id, ""))))
    return MomentSuite(str(store), tuple(moments), float(before_s), float(seconds))


def write_suite(suite: MomentSuite, path: str | os.PathLike[str]) -> Path:
    """Write ``suite`` as TOML (atomically: an old file stays whole if this fails)."""
    import tomli_w

    from dojo.atomic import write_text

    doc = {
        "version": VERSION,
        "store": suite.store,
        "before_s": suite.before_s,
        "seconds": suite.seconds,
        "moments": [asdict(m) for m in suite.moments],
    }
    return write_text(path, tomli_w.dumps(doc))


def load_suite(path: str | os.PathLike[str]) -> MomentSuite:
    """A suite file; entries that cannot be read are skipped, each with its reason."""
    try:
        import tomllib as toml
    except ModuleNotFoundError:  # Python 3.10
        import tomli as toml  # type: ignore[no-redef]

    p = Path(path)
    try:
        doc = toml.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"Suite {p} does not exist.") from None
    except (OSError, UnicodeDecodeError, toml.TOMLDecodeError) as e:
        raise ConfigError(f"Suite {p} is not a readable TOML file ({e}).") from None
    if doc.get("version") != VERSION:
        raise ConfigError(
            f"Suite {p} has version {doc.get('version')!r}; this Dojo reads {VERSION}."
        )
    store = doc.get("store")
    if not isinstance(store, str) or not store:
        raise ConfigError(f"Suite {p} names no store (a 'store' path).")
    if not os.path.isabs(store) and "://" not in store:  # relative to the suite's folder
        store = str((p.parent / store).resolve())
    moments, skipped = [], []
    for i, m in enumerate(doc.get("moments") or []):
        try:
            if not isinstance(m, dict):
                raise TypeError("not a table")
            t_s, drive, trigger = m["t_s"], m["drive"], m["trigger"]
            if not isinstance(t_s, (int, float)) or not isinstance(drive, str):
                raise TypeError("t_s must be a number and drive a string")
            moments.append(Moment(drive, float(t_s), str(trigger), str(m.get("source", ""))))
        except (KeyError, TypeError) as e:
            skipped.append(f"moment {i + 1} of {p.name}: unreadable ({e})")
    return MomentSuite(
        store,
        tuple(moments),
        doc.get("before_s", DEFAULT_BEFORE_S),
        doc.get("seconds", DEFAULT_SECONDS),
        tuple(skipped),
    )


def evaluate_suite(
    policy: str,
    suite: MomentSuite,
    progress: Callable[[int, int], None] | None = None,
    batch: int = BATCH,
    workers: int | None = None,
) -> dict[str, Any]:
    """Drive every moment of ``suite`` with ``policy``; see the module doc for the result.

    The moments drive in batches of at most ``batch`` worlds, spread over ``workers`` forked
    processes (default one a core); the results do not depend on either."""
    from dojo.data.store import Store
    from dojo.eval.evaluate import clustered_fields
    from dojo.eval.replay import check_policy, fleet_config
    from dojo.fleet.drive import Fleet
    from dojo.fleet.pool import default_workers, map_forked

    check_policy(policy)
    if policy == "logged":
        raise ConfigError("A suite is driven by a policy; 'logged' only replays one log.")
    start = time.perf_counter()
    store = Store(suite.store)
    skipped = list(suite.skipped)
    loaded: dict[str, LoggedDrive | str] = {}
    runnable: list[tuple[Moment, LoggedDrive, float]] = []
    for m in suite.moments:
        if m.drive not in loaded:
            try:
                loaded[m.drive] = load_stored_drive(store, m.drive)
            except DojoError as e:
                loaded[m.drive] = str(e)
        d = loaded[m.drive]
        where = f"moment {m.drive} at t={m.t_s:g} s ({m.source or 'no source named'})"
        if isinstance(d, str):
            skipped.append(f"{where}: {d}")
            continue
        why = d.why_not_resimulable()
        if why is not None:
            skipped.append(f"{where}: it cannot be re-simulated: {why}")
            continue
        if not d.start_s - 1e-9 <= m.t_s <= d.duration_s + 1e-9:
            skipped.append(f"{where}: outside the drive (0 to {d.duration_s:.1f} s)")
            continue
        begin = max(round((m.t_s - suite.before_s) / DT_S) * DT_S, d.start_s)
        runnable.append((m, d, begin))
    rows: list[dict[str, Any]] = []
    steps = max(1, round(suite.seconds / DT_S))
    groups: dict[str, list[tuple[Moment, LoggedDrive, float]]] = {}
    for item in runnable:  # one batch shares a rig and a safety driver
        key = repr(
            sorted(
                (k, str(item[1].config.get(k)))
                for k in ("rig", "rgb", "camera_width", "camera_height", "safety")
            )
        )
        groups.setdefault(key, []).append(item)
    # batches of at most `batch` moments, at least one a worker, each a rig's
    size = max(1, min(batch, math.ceil(len(runnable) / max(1, workers or default_workers()))))
    parts = [
        items[at : at + size] for items in groups.values() for at in range(0, len(items), size)
    ]

    def drive_part(i: int) -> list[dict[str, Any]]:
        part = parts[i]
        drives = [d for _, d, _ in part]
        b = resimulate_batch(drives, [begin for _, _, begin in part])
        config = fleet_config(
            drives[0].config, policy, [str(f) for f in b.world.families], len(part), steps
        )
        fleet = Fleet(
            config, world=b.world, route=b.route, ends_s=[t + steps * DT_S for _, _, t in part]
        )
        fleet.run()
        out = []
        for w, (m, _, begin) in enumerate(part):
            k, hits = int(fleet.car_critical[w]), int(fleet.car_collisions[w])
            out.append(
                {
                    "drive": m.drive,
                    "source": m.source,
                    "t_s": m.t_s,
                    "trigger": m.trigger,
                    "from_s": round(begin, 9),
                    "decisions": int(fleet.car_decisions[w]),
                    "critical_interventions": k,
                    "collisions": hits,
                    "passed": k == 0 and hits == 0,
                    "deviation_m": float(b.deviation_m[w]),
                }
            )
        return out

    for part_rows in map_forked(drive_part, len(parts), workers):
        rows += part_rows
    if progress is not None:
        progress(len(rows), len(runnable))
    rows.sort(key=lambda r: (r["drive"], r["t_s"]))
    decisions = sum(r["decisions"] for r in rows)
    critical = sum(r["critical_interventions"] for r in rows)
    out: dict[str, Any] = {
        "policy": policy,
        "suite": "moments",
        "store": suite.store,
        "before_s": suite.before_s,
        "seconds": suite.seconds,
        "moments": rows,
        "moments_run": len(rows),
        "moments_passed": sum(r["passed"] for r in rows),
        "moments_failed": sum(not r["passed"] for r in rows),
        "skipped": skipped,
        "decisions": decisions,
        "critical_interventions": critical,
        "collisions": sum(r["collisions"] for r in rows),
        "max_deviation_m": max((r["deviation_m"] for r in rows), default=0.0),
        "wall_s": time.perf_counter() - start,
    }
    if decisions:  # the moment is the cluster: its decisions are one scenario's
        out.update(clustered_fields(rows))
    return out


def format_suite_result(r: dict[str, Any]) -> str:
    lines = [
        f"{r['policy']} on {r['moments_run']} moments of {r['store']} "
        f"({r['before_s']:g} s before each, {r['seconds']:g} s driven): "
        f"{r['moments_passed']} passed, {r['moments_failed']} failed",
    ]
    if r.get("nines") is not None or r.get("nines_low") is not None:
        lines.append(
            f"  {r['decisions']} decisions, {r['critical_interventions']} critical interventions, "
            f"nines {r['nines']:.2f} (95% {r['nines_low']:.2f} to "
            f"{r['nines_high'] if r['nines_high'] is not None else float('inf'):.2f}, "
            f"{r['interval_method']})"
        )
    failed = [m for m in r["moments"] if not m["passed"]]
    for m in failed[:20]:
        lines.append(
            f"  failed: {m['source'] or m['drive']} at {m['t_s']:.1f} s ({m['trigger']}): "
            f"{m['critical_interventions']} critical, {m['collisions']} collisions"
        )
    if len(failed) > 20:
        lines.append(f"  ... and {len(failed) - 20} more failed")
    for s in r["skipped"][:20]:
        lines.append(f"  skipped: {s}")
    if len(r["skipped"]) > 20:
        lines.append(f"  ... and {len(r['skipped']) - 20} more skipped")
    return "\n".join(lines)


__all__ = [
    "DEFAULT_TRIGGERS",
    "Moment",
    "MomentSuite",
    "evaluate_suite",
    "format_suite_result",
    "load_suite",
    "suite_from_store",
    "write_suite",
]
