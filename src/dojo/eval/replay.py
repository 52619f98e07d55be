"""Replay a logged moment with a policy driving: ``dojo replay LOG.mcap --from T``.

The world is started from the log at ``T`` (re-simulated exactly when Dojo's world wrote the
log, else placed from its scene: :mod:`dojo.eval.resim`), then a policy drives for ``seconds``
with the safety driver watching, as in autonomous mode, and the replay can be written as a
drive log in the same format, so the logged and the replayed drive open side by side in
Foxglove (they share drive times: the replay's first frame is at ``T``). ``logged`` as the
policy follows the log instead, which measures how faithful the start is.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dojo.errors import ConfigError
from dojo.eval.resim import LoggedDrive, Replayer, from_scene, load_drive, resimulate
from dojo.fleet.config import BASELINES, DriveConfig, SafetyConfig
from dojo.world.world import DT_S

LOGGED = "logged"  # the policy that drives as the log did
STARTS = ("auto", "resim", "scene")
DEFAULT_SECONDS = 10.0


@dataclass(frozen=True)
class ReplayResult:
    """What ``dojo replay --json`` prints."""

    log: str
    start: str  # resim or scene: how the world reached the moment
    from_s: float  # [s] the moment
    seconds: float  # [s] replayed (a logged replay stops where the log does)
    policy: str
    decisions: int
    critical_interventions: int
    noncritical_interventions: int
    collisions: int
    # [m] the largest distance between a replayed and the logged vehicle while the ego still
    # followed the log: up to the moment, and for the logged policy over the whole replay
    max_deviation_m: float
    unpaired: int  # vehicles logged or replayed without a partner at some step (worst step)
    out: str | None
    reasons: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_policy(policy: str) -> str:
    """``policy`` if replay can drive with it; the checkpoint's own checks come when it loads."""
    if not isinstance(policy, str) or not policy:
        raise ConfigError(f"policy={policy!r} must be {LOGGED}, a baseline or a checkpoint path.")
    if policy != LOGGED and policy not in BASELINES and not Path(policy).suffix:
        raise ConfigError(
            f"Unknown policy {policy!r}: give {LOGGED}, a baseline ({', '.join(BASELINES)}) or "
            "the path of a checkpoint file."
        )
    return policy


def start_world(drive: LoggedDrive, from_s: float, start: str = "auto") -> tuple[Replayer, str]:
    """The world at the moment ``from_s`` [s], and how it got there (resim or scene)."""
    if start not in STARTS:
        raise ConfigError(f"start={start!r} must be one of {', '.join(STARTS)}.")
    drive.step_of(from_s)  # a moment outside the log: its error first
    why = drive.why_not_resimulable()
    if start == "resim" or (start == "auto" and why is None):
        return resimulate(drive, from_s), "resim"
    if len(drive.scene) == 0:
        raise ConfigError(
            f"Drive log {drive.path.name} can neither be re-simulated ({why}) nor started from "
            "its scene (it has no /scene channel)."
        )
    return from_scene(drive, from_s), "scene"


def replay(
    log: str | os.PathLike[str],
    from_s: float,
    seconds: float = DEFAULT_SECONDS,
    policy: str = "naive",
    out: str | os.PathLike[str] | None = None,
    start: str = "auto",
) -> ReplayResult:
    """Drive the moment ``from_s`` [s] of ``log`` for ``seconds`` with ``policy``; see the module
    doc. ``out``: write the replay there as a drive log (an existing file is not overwritten)."""
    from dojo.fleet.drive import Fleet

    policy = check_policy(policy)
    if not isinstance(seconds, (int, float)) or not seconds > 0:
        raise ConfigError(f"seconds={seconds!r} must be a positive number of seconds.")
    target = Path(out) if out is not None else None
    if target is not None:
        if target.exists():
            raise ConfigError(f"Output {target} already exists; choose another --out.")
        if not target.parent.is_dir():
            raise ConfigError(f"Output folder {target.parent} does not exist.")
    drive = load_drive(log)
    rep, how = start_world(drive, from_s, start)
    if policy == LOGGED:  # the log has no actions past its end
        seconds = min(float(seconds), drive.duration_s - rep.step * DT_S + 1e-9)
        if seconds < DT_S / 2:
            raise ConfigError(
                f"Moment t={from_s!r} s is the end of {drive.path.name}: nothing is left to "
                "replay with the logged policy."
            )
    steps = max(1, round(seconds / DT_S))
    config = fleet_config(
        drive.config, policy, [str(rep.world.families[0])], 1, steps, target and target.parent
    )
    folder = Path(tempfile.mkdtemp(prefix=".replay-", dir=target.parent)) if target else None
    try:
        fleet = Fleet(
            config,
            world=rep.world,
            route=rep.route,
            folder=folder,
            follower=rep if policy == LOGGED else None,
            ends_s=[rep.step * DT_S + steps * DT_S],
            metadata={"replay_of": drive.path.name, "replay_from_s": float(from_s)},
        )
        before = rep.max_deviation_m, rep.unpaired  # while following the log to the moment
        summary = fleet.run()
        if summary.interrupted:
            raise KeyboardInterrupt
        if policy != LOGGED:
            rep.max_deviation_m, rep.unpaired = before
        if target is not None:
            assert folder is not None
            written = sorted(folder.glob("*.mcap"))
            os.replace(written[0], target)
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
    return ReplayResult(
        log=str(drive.path),
        start=how,
        from_s=float(from_s),
        seconds=round(summary.decisions * DT_S, 9),
        policy=policy,
        decisions=summary.decisions,
        critical_interventions=summary.critical_interventions,
        noncritical_interventions=summary.noncritical_interventions,
        collisions=summary.collisions,
        max_deviation_m=rep.max_deviation_m,
        unpaired=rep.unpaired,
        out=str(target) if target is not None else None,
        reasons=dict(summary.reasons),
    )


def worlds_at(
    drive: LoggedDrive, t_s: float, before_s: float, policies: dict[str, str]
) -> dict[str, tuple[Any, float]]:
    """The world of ``drive`` at the moment ``t_s`` [s] as logged, and as each of ``policies``
    (name -> policy) leaves it after driving from ``before_s`` ahead of it, with the safety
    driver watching: name -> (a one-world World, its drive time [s]). ``logged`` is the log's
    own state; a policy's drive that ends in a collision stops there, earlier."""
    from dojo.fleet.drive import Fleet

    out: dict[str, tuple[Any, float]] = {}
    logged = resimulate(drive, t_s)
    out[LOGGED] = (logged.world, float(logged.world.time_s[0]))
    begin = max(round((t_s - before_s) / DT_S) * DT_S, drive.start_s)
    steps = max(1, round((t_s - begin) / DT_S))
    for name, policy in policies.items():
        rep = resimulate(drive, begin)
        config = fleet_config(drive.config, check_policy(policy), [str(drive.family)], 1, steps)
        Fleet(config, world=rep.world, route=rep.route, ends_s=[begin + steps * DT_S]).run()
        out[name] = (rep.world, float(rep.world.time_s[0]))
    return out


def fleet_config(
    logged: dict[str, Any],
    policy: str,
    families: list[str],
    cars: int,
    steps: int,
    out: Path | None = None,
) -> DriveConfig:
    """An autonomous drive of ``steps`` steps from moments of logs whose fleet config is
    ``logged`` (their rig, their safety driver), ``cars`` cars; logged to ``out`` if given."""
    fields: dict[str, Any] = {
        k: logged[k] for k in ("rig", "rgb", "camera_width", "camera_height") if k in logged
    }
    if logged.get("safety"):  # the log's safety driver watches the replay too
        fields["safety"] = SafetyConfig(**logged["safety"])
    return DriveConfig(
        cars=cars,
        minutes=steps * DT_S / 60.0,
        mode="manual" if policy == LOGGED else "autonomous",
        policy="naive" if policy == LOGGED else policy,
        families=tuple(sorted(set(families))),
        out=str(out) if out is not None else ".",
        logging="full" if out is not None else "none",
        **fields,
    )


def format_replay(r: dict[str, Any]) -> str:
    """The human-readable ``dojo replay`` report."""
    lines = [
        f"replay of {Path(r['log']).name} from t={r['from_s']:g} s ({r['start']}), "
        f"{r['seconds']:g} s with {r['policy']}",
        f"  decisions {r['decisions']}, critical interventions {r['critical_interventions']}, "
        f"non-critical {r['noncritical_interventions']}, collisions {r['collisions']}",
        f"  max deviation from the log while following it: {r['max_deviation_m']:.3g} m"
        + (f" ({r['unpaired']} vehicles unpaired)" if r["unpaired"] else ""),
    ]
    if r["out"]:
        lines.append(f"  written to {r['out']}")
    return "\n".join(lines)
