"""Typed settings of a fleet drive, validated before any car moves.

Every threshold the safety driver, shadow mode and the on-board triggers use lives here, with
its unit, so a drive's metadata records exactly what was applied.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from dojo import validate
from dojo.errors import DojoConfigError
from dojo.settings import setting
from dojo.world.rigs import check_rig, rig_setting
from dojo.world.scenarios import FAMILIES, HELDOUT_SEEDS, TRAIN_SEEDS

MODES = ("manual", "shadow", "autonomous", "mixed")
LOGGING = ("full", "triggers", "none")
BASELINES = ("naive", "expert", "careful", "planner")
PLANNER_PREFIX = "planner:"  # planner:CHECKPOINT: a --net perception checkpoint drives the planner


def _families(text: str) -> tuple[str, ...]:
    """``--scenarios a,b`` as a tuple; empty text means every family."""
    return tuple(f.strip() for f in text.split(",")) if text else FAMILIES


def _number(owner: str, name: str, value: object, low: float, low_ok: bool = True) -> float:
    return validate.number(f"{owner}.{name}", value, low, low_open=not low_ok)


def _check_numbers(obj: object, lows: dict[str, tuple[float, bool]]) -> None:
    for f in fields(obj):  # type: ignore[arg-type]
        if f.name in lows:
            low, ok = lows[f.name]
            _number(type(obj).__name__, f.name, getattr(obj, f.name), low, ok)


@dataclass(frozen=True)
class SafetyConfig:
    """When the safety driver takes over from the network, and for how long.

    Critical: the ego's time-to-collision is under ``ttc_critical_s``, or keeping the
    network's acceleration would close the gap within ``reaction_s``, or its steering
    would leave the road within ``reaction_s``. Control passes to the safety driver
    ``reaction_s`` after the moment it sees the danger; if the collision comes first, it
    was too late. Non-critical: ignoring the route command for ``command_patience_s``,
    straddling a lane line for ``straddle_s``, driving under ``slow_share`` of the desired
    speed with a free lane ahead for ``slow_s``, or braking harder than ``harsh_brake_mps2``
    with nothing closing in (TTC over 4 s and a time gap over 2 s).
    """

    ttc_critical_s: float = 1.5
    reaction_s: float = 0.3
    hold_s: float = 3.0
    command_patience_s: float = 15.0
    straddle_s: float = 3.0
    slow_share: float = 0.5
    slow_s: float = 5.0
    free_gap_m: float = 60.0
    harsh_brake_mps2: float = 5.0

    def __post_init__(self) -> None:
        _check_numbers(self, {f.name: (0.0, f.name == "reaction_s") for f in fields(self)})
        if self.slow_share >= 1.0:
            raise DojoConfigError(f"SafetyConfig.slow_share={self.slow_share!r} must be below 1.")


@dataclass(frozen=True)
class TriggerConfig:
    """What a car uploads: the windows around events, plus a sampled share of normal driving.

    ``shadow_accel_mps2``: a shadow prediction whose acceleration differs from the human's by
    more than this, or that heads for another lane than the human within ``lane_preview_s``,
    is a disagreement once it lasts ``persist_s``. ``near_miss_ttc_s``: a TTC under this is a
    near miss; ``hard_brake_mps2``: braking harder than this is a hard brake. An event of one
    kind repeats on a car only after ``cooldown_s``. ``sample_normal``: share of the
    ``sample_slot_s`` slots of driving uploaded without any event.
    """

    window_before_s: float = 5.0
    window_after_s: float = 2.0
    sample_normal: float = 0.1
    sample_slot_s: float = 10.0
    near_miss_ttc_s: float = 2.5
    hard_brake_mps2: float = 4.0
    shadow_accel_mps2: float = 2.0
    lane_preview_s: float = 1.5
    persist_s: float = 0.3
    cooldown_s: float = 3.0

    def __post_init__(self) -> None:
        positive = {
            "sample_slot_s",
            "near_miss_ttc_s",
            "hard_brake_mps2",
            "shadow_accel_mps2",
            "lane_preview_s",
        }
        _check_numbers(self, {f.name: (0.0, f.name not in positive) for f in fields(self)})
        if self.sample_normal > 1.0:
            raise DojoConfigError(
                f"TriggerConfig.sample_normal={self.sample_normal!r} must be a share in [0, 1]."
            )


@dataclass(frozen=True)
class DriveConfig:
    """One fleet drive: N cars for M simulated minutes in a mode, each car's drives as MCAP logs.

    ``policy``: the on-board network: ``naive``, ``expert``, ``careful``, ``planner``, a checkpoint
    path or ``planner:CHECKPOINT`` (ignored in ``manual`` mode). ``rig``: the camera rig the cars carry, by name
    (:data:`dojo.world.rigs.RIGS`). ``families``: scenario families the cars are sent into, round robin.
    ``seed``: first scenario seed; car c's k-th drive uses ``seed + k * cars + c`` (wrapping
    inside the seed range).
    ``drive_s``: length of one drive (one log file) [s]; a collision ends a drive early.
    ``logging``: ``full`` logs every frame, ``triggers`` only the uploaded windows (telemetry,
    pose and events are always logged: they are small), ``none`` writes nothing (evaluation). ``heldout``: draw seeds from the
    held-out range (evaluation); the default is the training range.
    """

    cars: int = setting(8, help="fleet size (each car is one world of the batch)")
    minutes: float = setting(2.0, help="simulated minutes per car", unit="min")
    mode: str = setting(
        "shadow",
        help="manual | shadow | autonomous | mixed (even cars shadow, odd autonomous)",
        choices=MODES,
    )
    policy: str = setting(
        "naive",
        help="on-board network: naive | expert | careful | planner | a checkpoint path | planner:CHECKPOINT",
    )
    families: tuple[str, ...] = setting(
        FAMILIES,
        help="comma-separated scenario families (default: all)",
        flag="--scenarios",
        cli_default="",
        parse=_families,
        show=",".join,
    )
    seed: int = setting(0, help="first scenario seed")
    out: str = setting(
        "drives", help="folder for the drive logs (created if missing)", required=True
    )
    drive_s: float = setting(
        40.0, help="length of one drive (one log) [s]", flag="--drive-seconds", unit="s"
    )
    logging: str = setting(
        "full",
        help="full (every frame) | triggers (only windows around events) | none (no logs)",
        choices=LOGGING,
    )
    heldout: bool = setting(False, help="use held-out seeds (evaluation), not training seeds")
    rig: str = rig_setting()
    batch_cars: int = setting(
        0,
        help="cars a batch: the drive is split into batches of this many cars, one Ray task "
        "each with --ray (0: one batch locally, one a CPU of the cluster on Ray, one when a "
        "checkpoint drives); with naive, expert or careful the logs do not depend on it",
    )
    keyframe_interval_s: float = 1.0
    camera_width: int = 96
    camera_height: int = 48
    rgb: bool = False
    label_every: int = 1
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    triggers: TriggerConfig = field(default_factory=TriggerConfig)

    def __post_init__(self) -> None:
        for name in ("cars", "seed", "camera_width", "camera_height", "label_every", "batch_cars"):
            validate.whole(name, getattr(self, name))
        validate.whole("cars", self.cars, 1)
        validate.whole("label_every", self.label_every, 1)
        validate.whole("batch_cars", self.batch_cars, 0)
        _number("DriveConfig", "minutes", self.minutes, 0.0, False)
        _number("DriveConfig", "drive_s", self.drive_s, 0.0, False)
        if self.mode not in MODES:
            raise DojoConfigError(f"mode={self.mode!r} must be one of {', '.join(MODES)}.")
        check_rig(self.rig)
        if self.logging not in LOGGING:
            raise DojoConfigError(f"logging={self.logging!r} must be one of {', '.join(LOGGING)}.")
        if not isinstance(self.policy, str) or not self.policy:
            raise DojoConfigError(
                f"policy={self.policy!r} must be a baseline ({', '.join(BASELINES)}), a checkpoint path or planner:CHECKPOINT."
            )
        if not self.families:
            raise DojoConfigError("families is empty; name at least one scenario family.")
        for fam in self.families:
            if fam not in FAMILIES:
                raise DojoConfigError(
                    f"Unknown scenario family {fam!r}; choose from: {', '.join(FAMILIES)}."
                )
        seeds = self.seed_range
        if self.seed not in seeds:
            which = "held-out" if self.heldout else "training"
            raise DojoConfigError(
                f"seed={self.seed!r} is outside the {which} seed range [{seeds.start}, {seeds.stop})."
            )

    @property
    def seed_range(self) -> range:
        return HELDOUT_SEEDS if self.heldout else TRAIN_SEEDS

    def drive_seed(self, car: int, drive: int) -> int:
        """Scenario seed of car ``car``'s ``drive``-th drive; wraps inside the seed range."""
        seeds = self.seed_range
        return seeds.start + (self.seed - seeds.start + drive * self.cars + car) % len(seeds)

    def drive_family(self, car: int, drive: int) -> str:
        """Scenario family of car ``car``'s ``drive``-th drive.

        Cars go in pairs (0 and 1, 2 and 3, ...) that share a family: in ``mixed`` mode a pair is
        one shadow and one autonomous car, so every family a drive holds gets both human and
        network driving. (Counting cars one by one, ``(car + drive * cars) % families`` with 24
        cars and 6 families gave every drive ``car % 6``, so the shadow cars drove only half of
        the families.) The pairs step through the families with the drive number, so over a
        fleet's drives every pair meets every family.
        """
        pairs = (self.cars + 1) // 2
        return self.families[(car // 2 + drive * pairs) % len(self.families)]

    def batches(self, workers: int = 1) -> list[list[int]]:
        """The fleet's cars in consecutive batches of ``batch_cars`` (0: split over ``workers``).

        A network's outputs round differently with the size of its batch, so a fleet that a
        checkpoint drives is split only when ``batch_cars`` asks for it: then each batch is the
        same drive only up to float rounding, and its cars may part ways with the unsplit fleet's.
        """
        if not self.batch_cars and self.mode != "manual" and self.policy not in BASELINES:
            workers = 1
        size = self.batch_cars or -(-self.cars // max(1, workers))
        return [list(range(lo, min(lo + size, self.cars))) for lo in range(0, self.cars, size)]

    @property
    def steps(self) -> int:
        """Decision steps of the whole drive (0.1 s each)."""
        return max(1, round(self.minutes * 600))

    def as_metadata(self) -> dict[str, Any]:
        """What a drive log records of the drive: everything but the folder it was written to (and a
        checkpoint's path relative to it) and how it was split into batches, so the same drive
        writes the same bytes, and gets the same content-hash drive id, wherever it lands."""
        out = asdict(self)
        out.pop("out")
        out.pop("batch_cars")  # how the drive was split, not what was driven
        out["families"] = list(self.families)
        if (
            self.policy not in BASELINES
        ):  # a checkpoint: named from the logs' folder, which moves with it
            prefix = PLANNER_PREFIX if self.policy.startswith(PLANNER_PREFIX) else ""
            path = self.policy.removeprefix(prefix)
            out["policy"] = prefix + os.path.relpath(path, self.out)
        return out
