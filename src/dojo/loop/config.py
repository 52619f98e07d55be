"""Configuration of ``dojo loop``: how much each turn drives, trains and evaluates.

A :class:`LoopConfig` holds the stage configs a turn runs, :class:`~dojo.fleet.config.DriveConfig`
(``drive``), :class:`~dojo.train.config.TrainConfig` (``train``) and
:class:`~dojo.eval.config.EvalConfig` (``eval``), beside the loop's own settings. Each stage's
default is its own; where the loop deliberately differs, the value and the reason are in
:data:`LOOP_OVERRIDES`, the one table of such differences (and :data:`NET_OVERRIDES` where one
net's turn differs again). The defaults are sized for the main
job on a 2-core laptop: five turns in about a quarter of an hour. Every value is checked before
the first car moves.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

from dojo import settings, validate
from dojo.errors import DojoConfigError
from dojo.eval.config import EvalConfig
from dojo.fleet.config import DriveConfig
from dojo.train.config import NETS, SIZES, TrainConfig

# Triggers the loop mines each turn, and the window around each moment [s]. The hazards are cut
# around the moment (the lead-up is what the network must learn to read); a takeover is cut from
# the moment on, so its windows hold the safety driver's controls, the HG-DAgger labels.
HAZARD_TRIGGERS = ("near_miss", "hard_brake", "cut_in", "shadow_disagreement", "collision")
TAKEOVER_TRIGGERS = ("critical_intervention", "noncritical_intervention")
# windows whose actions the loop may imitate with the logged controls as targets: a person drove
# (the network's own actions are no target)
LABEL_SOURCES = ("human", "safety_driver")


def label_sources(labels: str) -> tuple[str, ...]:
    """The drivers whose windows a turn trains on: with ``train.labels='autolabel'`` every
    frame has the auto-labeler's target, the network's own too (DAgger); with the logged
    controls only what a person drove (HG-DAgger)."""
    return (*LABEL_SOURCES, "network") if labels == "autolabel" else LABEL_SOURCES


class Override(NamedTuple):
    """A value the loop uses instead of its stage's own default, and why."""

    value: Any
    why: str


# Where a turn deliberately differs from `dojo drive`, `dojo train` and `dojo eval`, by path.
_SIZED = "sized for the main job on a 2-core laptop: five turns in about a quarter of an hour"
LOOP_OVERRIDES: dict[str, Override] = {
    "drive.cars": Override(24, _SIZED),
    "drive.minutes": Override(1.0, "simulated, per car per turn; " + _SIZED),
    "train.steps": Override(3000, "per candidate, on the aggregated dataset; " + _SIZED),
    "train.batch_size": Override(64, _SIZED),
    "train.lr": Override(
        5e-4,
        "measured on one turn's data: at 2e-3 the tiny policy's loss sat on the "
        "predict-the-mean plateau for 1,200 steps (0.114); at 5e-4 it fell to 0.080 in the "
        "same steps",
    ),
    "train.buffer_windows": Override(
        8192,
        "windows in the trainer's shuffle buffer: large, so a batch mixes many drives rather "
        "than the consecutive, near-identical frames of two or three clips (measured: with 256 "
        "the tiny policy learned no braking in 1,500 steps; drawn at random from all windows it "
        "did)",
    ),
    "eval.decisions": Override(24_000, "on the same held-out seeds for every model; " + _SIZED),
}
# Where a turn of one net differs again (applied by LoopConfig.from_dict unless the value is given).
NET_OVERRIDES: dict[str, dict[str, Override]] = {
    "perception": {
        "train.occupancy_weight": Override(
            0.0,
            "the planner reads only the planner heads, and the occupancy decoder is most of a "
            "training step: measured on one turn's auto-labels (2,000 steps, same seeds), "
            "without it training took 84 s instead of 537 s and the planner drove 54 critical "
            "interventions in 38,400 held-out decisions instead of 66",
        )
    },
}
# What a turn sets itself in each stage's config (the values here only fill the fields):
# drive mode, policy, seed and folder; train dataset, store, folder, seed, checkpoints, start.
PER_TURN = "(set per turn)"
_PLACEHOLDERS: dict[str, dict[str, Any]] = {
    "drive": {},
    "train": {"dataset": PER_TURN, "store": PER_TURN, "out": PER_TURN},
    "eval": {},
}
_STAGES: dict[str, type[Any]] = {"drive": DriveConfig, "train": TrainConfig, "eval": EvalConfig}

# The loop's flat names of its stages' settings: its flags' names, and the keys of the flat
# config.json that loops written before the configs were nested hold.
FLAT_NAMES: dict[str, str] = {
    "cars": "drive.cars",
    "drive_minutes": "drive.minutes",
    "batch_cars": "drive.batch_cars",
    "net": "train.net",
    "occupancy_weight": "train.occupancy_weight",
    "size": "train.size",
    "train_steps": "train.steps",
    "batch_size": "train.batch_size",
    "lr": "train.lr",
    "shuffle_windows": "train.buffer_windows",
    "frames": "train.frames",
    "labels": "train.labels",
    "hazard_weight": "train.hazard_weight",
    "underbrake_weight": "train.underbrake_weight",
    "eval_decisions": "eval.decisions",
    "eval_cars": "eval.cars",
    "suite": "eval.suite",
    "suites_file": "eval.suites_file",
}


def stage(name: str, values: Mapping[str, Any] | None = None) -> Any:
    """The ``name`` stage's config for the loop: its defaults, the loop's overrides, ``values``."""
    prefix = name + "."
    loop = {k[len(prefix) :]: o.value for k, o in LOOP_OVERRIDES.items() if k.startswith(prefix)}
    merged = {**_PLACEHOLDERS[name], **loop, **(values or {})}
    return settings.from_dict(_STAGES[name], merged)


def _check_named(flat: Mapping[str, Any]) -> None:
    """The stage settings given by their loop names, checked under those names (``loop cars``)."""
    for name, low in (
        ("cars", 1),
        ("train_steps", 1),
        ("batch_size", 1),
        ("shuffle_windows", 0),
        ("frames", 1),
        ("eval_decisions", 1),
        ("eval_cars", 1),
    ):
        if name in flat:
            validate.whole(f"loop {name}", flat[name], low)
    for name in ("drive_minutes", "lr"):
        if name in flat:
            validate.number(f"loop {name}", flat[name], 0.0, low_open=True)
    if "occupancy_weight" in flat:
        validate.number("loop occupancy_weight", flat["occupancy_weight"], 0.0)
    if "net" in flat:
        validate.choice("loop net", flat["net"], NETS)
    if "size" in flat:
        validate.choice("loop size", flat["size"], SIZES)


def _window(text: str) -> tuple[float, float]:
    from dojo.data.mine import parse_window

    return parse_window(text)


@dataclass(frozen=True)
class LoopConfig:
    """One ``dojo loop`` run.

    ``loops``: turns, numbered from 0 (turn 0 learns from manual driving; later turns deploy the
    current model). ``drive.cars`` drive ``drive.minutes`` simulated minutes each per turn (even
    cars in shadow mode, odd cars autonomous with the safety driver, from turn 1).
    ``budget_minutes``: wall-clock budget; a turn that would not finish inside it (judged by the
    slowest turn so far) is not started. ``train.steps`` of ``train.batch_size`` windows train
    each candidate on the aggregated dataset, from the deployed network's weights with
    ``warm_start`` (else from scratch). ``eval.decisions`` on ``eval.suite`` judge every
    candidate and both baselines on the same seeds. ``sample_normal``: share of untriggered
    driving added per turn. Build one from flat or nested values with :meth:`from_dict`.
    """

    out: str = settings.setting(
        "out/loop", help="an empty or new folder for everything (default %(default)s)"
    )
    loops: int = settings.setting(5, help="turns, counted from 0 (default %(default)s)")
    budget_minutes: float = settings.setting(  # wall clock
        20.0,
        help="wall-clock budget; no turn starts that would overrun it (default %(default)s)",
        unit="min",
    )
    seed: int = settings.setting(0, help="")
    drive: DriveConfig = dataclasses.field(default_factory=lambda: stage("drive"))
    train: TrainConfig = dataclasses.field(default_factory=lambda: stage("train"))
    eval: EvalConfig = dataclasses.field(default_factory=lambda: stage("eval"))
    # start each candidate from the deployed network's weights (once one is deployed): the
    # training of every promoted turn carries over, and candidates differ by what the new data
    # teaches rather than by a fresh random start
    warm_start: bool = True
    # the model deployed before turn 0: naive, or a policy checkpoint (a team's current network);
    # it is evaluated beside the baselines, gates the first candidate and warm-starts it
    start_policy: str = settings.setting(
        "naive",
        help="the model deployed before turn 0: naive or a policy checkpoint, which also "
        "warm-starts the first candidate (default %(default)s)",
        metavar="naive|PATH",
    )
    # all of each turn's human driving (not only the triggered moments): driving is cheap and
    # the approach to a stalled car rarely trips a trigger, yet it is what naive gets wrong
    sample_normal: float = settings.setting(
        1.0, help="share of untriggered driving mined each turn (default %(default)s)"
    )
    hazard_window_s: tuple[float, float] = settings.setting(
        (-3.0, 2.0),
        help="window around a hazard moment (default %(default)s)",
        flag="--hazard-window",
        cli_default="-3s:+2s",
        parse=_window,
        unit="s",
    )
    takeover_window_s: tuple[float, float] = settings.setting(
        (0.0, 3.0),
        help="window from a takeover on (default %(default)s)",
        flag="--takeover-window",
        cli_default="0s:+3s",
        parse=_window,
        unit="s",
    )
    val_share: float = 0.2
    alpha: float = 0.05
    # the fleet's critical moments, kept as a regression suite (moments.toml in the loop's
    # folder) that every candidate drives beside the held-out suite: see dojo.loop.moments
    moment_rule: str = settings.setting(
        "net",
        help="a candidate that fails fleet moments the deployed model passes: net (refused when "
        "it breaks more than it fixes), any (refused when it breaks one), warn (never refused)",
    )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LoopConfig:
        """A config from nested values (``{"train": {"steps": 20}}``, as ``to_dict`` writes) or
        flat ones (``{"train_steps": 20}``, the flags' names and the config.json of loops
        written before the configs were nested), or both; the rest are the defaults."""
        own = {f.name for f in dataclasses.fields(cls)} - set(_STAGES)
        nested: dict[str, dict[str, Any]] = {name: {} for name in _STAGES}
        flat: dict[str, Any] = {}
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key in _STAGES:
                if isinstance(value, _STAGES[key]):
                    value = asdict(value)
                if not isinstance(value, Mapping):
                    raise DojoConfigError(f"loop {key}={value!r} must be a table of settings.")
                nested[key].update(value)
            elif key in FLAT_NAMES:
                flat[key] = value
            elif key in own:
                values[key] = value
            else:
                raise DojoConfigError(f"loop has no setting {key!r}.")
        _check_named(flat)
        for key, value in flat.items():
            name, field = FLAT_NAMES[key].split(".")
            nested[name][field] = value
        for key in ("hazard_window_s", "takeover_window_s"):
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        net = nested["train"].get("net", settings.default_of(TrainConfig, "net"))
        for path, override in (NET_OVERRIDES.get(net, {}) if isinstance(net, str) else {}).items():
            name, field = path.split(".")
            nested[name].setdefault(field, override.value)
        for name, given in nested.items():
            values[name] = stage(name, given)
        return cls(**values)

    def __post_init__(self) -> None:
        if not isinstance(self.out, str) or not self.out.strip():
            raise DojoConfigError(f"loop out={self.out!r} must name a folder.")
        validate.whole("loop loops", self.loops, 1)
        validate.whole("loop seed", self.seed, 0)
        for name, kind in _STAGES.items():
            if not isinstance(getattr(self, name), kind):
                raise DojoConfigError(f"loop {name} must be a {kind.__name__}.")
        if self.drive.cars < 2:
            raise DojoConfigError(
                f"loop cars={self.drive.cars} must be at least 2: one shadow and one autonomous "
                "car a turn."
            )
        validate.flag("loop warm_start", self.warm_start)
        if not isinstance(self.start_policy, str) or (
            self.start_policy != "naive" and not Path(self.start_policy).is_file()
        ):
            raise DojoConfigError(
                f"loop start_policy={self.start_policy!r} must be 'naive' or a policy checkpoint "
                "file (policy.pt or checkpoint.pt)."
            )
        validate.number("loop budget_minutes", self.budget_minutes, 0.0, low_open=True)
        validate.number("loop alpha", self.alpha, 0.0, 0.5, low_open=True)
        validate.number("loop val_share", self.val_share, 0.0, 0.9, low_open=True)
        validate.share("loop sample_normal", self.sample_normal)
        from dojo.loop.moments import MOMENT_RULES

        if self.moment_rule not in MOMENT_RULES:
            raise DojoConfigError(
                f"loop moment_rule={self.moment_rule!r} must be one of {', '.join(MOMENT_RULES)}."
            )
        if self.train.net == "occupancy":
            raise DojoConfigError(
                "loop net='occupancy' cannot drive; use 'policy', 'both' or 'perception'."
            )
        for name in ("hazard_window_s", "takeover_window_s"):
            lo, hi = getattr(self, name)
            if not lo < hi:
                raise DojoConfigError(f"loop {name}={(lo, hi)!r} must start before it ends.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


__all__ = [
    "FLAT_NAMES",
    "HAZARD_TRIGGERS",
    "LABEL_SOURCES",
    "LOOP_OVERRIDES",
    "NET_OVERRIDES",
    "PER_TURN",
    "TAKEOVER_TRIGGERS",
    "LoopConfig",
    "label_sources",
    "Override",
    "stage",
]
