"""Configuration of ``dojo loop``: how much each turn drives, trains and evaluates.

The defaults are sized for the main job on a 2-core laptop: five turns in about a quarter of
an hour. Every value is checked before the first car moves.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dojo.errors import DojoConfigError
from dojo.nets.occupancy import NET_KINDS
from dojo.nets.policy import SIZES
from dojo.validate import choice, flag, number, share, store_canonical, whole

# Triggers the loop mines each turn, and the window around each moment [s]. The hazards are cut
# around the moment (the lead-up is what the network must learn to read); a takeover is cut from
# the moment on, so its windows hold the safety driver's controls, the HG-DAgger labels.
HAZARD_TRIGGERS = ("near_miss", "hard_brake", "cut_in", "shadow_disagreement", "collision")
TAKEOVER_TRIGGERS = ("critical_intervention", "noncritical_intervention")
# windows whose actions the loop may imitate: a person drove (the network's own actions are no target)
LABEL_SOURCES = ("human", "safety_driver")


@dataclass(frozen=True)
class LoopConfig:
    """One ``dojo loop`` run.

    ``loops``: turns, numbered from 0 (turn 0 learns from manual driving; later turns deploy the
    current model). ``cars`` drive ``drive_minutes`` simulated minutes each per turn (even cars in
    shadow mode, odd cars autonomous with the safety driver, from turn 1). ``budget_minutes``:
    wall-clock budget; a turn that would not finish inside it (judged by the slowest turn so far)
    is not started. ``train_steps`` of ``batch_size`` windows train each candidate on the
    aggregated dataset, from the deployed network's weights with ``warm_start`` (else from scratch). ``eval_decisions`` on ``suite`` judge every candidate and both
    baselines on the same seeds. ``sample_normal``: share of untriggered driving added per turn.
    """

    out: str = "out/loop"
    loops: int = 5
    cars: int = 24
    drive_minutes: float = 1.0  # simulated, per car per turn
    budget_minutes: float = 20.0  # wall clock
    seed: int = 0
    net: str = "policy"
    size: str = "tiny"
    train_steps: int = 3000
    batch_size: int = 64
    # lower than `dojo train`'s: on one turn's data a higher rate left the tiny policy's loss on
    # the predict-the-mean plateau, this one left it (the runs: docs/benchmarks.md, `dojo loop`)
    lr: float = 5e-4
    # windows in the trainer's shuffle buffer: large, so a batch mixes many drives rather than
    # the consecutive, near-identical frames of two or three clips (with a small buffer the tiny
    # policy learned no braking; the run is in docs/train.md)
    shuffle_windows: int = 8192
    # start each candidate from the deployed network's weights (once one is deployed): the
    # training of every promoted turn carries over, and candidates differ by what the new data
    # teaches rather than by a fresh random start
    warm_start: bool = True
    # the model deployed before turn 0: naive, or a policy checkpoint (a team's current network);
    # it is evaluated beside the baselines, gates the first candidate and warm-starts it
    start_policy: str = "naive"
    frames: int = 2
    eval_decisions: int = 24_000
    eval_cars: int = 16
    suite: str = "heldout"
    suites_file: str | None = None
    # all of each turn's human driving (not only the triggered moments): driving is cheap and
    # the approach to a stalled car rarely trips a trigger, yet it is what naive gets wrong
    sample_normal: float = 1.0
    hazard_window_s: tuple[float, float] = (-3.0, 2.0)
    takeover_window_s: tuple[float, float] = (0.0, 3.0)
    val_share: float = 0.2
    alpha: float = 0.05

    def __post_init__(self) -> None:
        if not isinstance(self.out, str) or not self.out.strip():
            raise DojoConfigError(f"loop out={self.out!r} must name a folder.")
        for name, low in (
            ("loops", 1),
            ("cars", 1),
            ("seed", 0),
            ("train_steps", 1),
            ("batch_size", 1),
            ("shuffle_windows", 0),
            ("frames", 1),
            ("eval_decisions", 1),
            ("eval_cars", 1),
        ):
            store_canonical(self, name, whole(f"loop {name}", getattr(self, name), low))
        if self.cars < 2:
            raise DojoConfigError(
                f"loop cars={self.cars} must be at least 2: one shadow and one autonomous car a turn."
            )
        flag("loop warm_start", self.warm_start)
        if not isinstance(self.start_policy, str) or (
            self.start_policy != "naive" and not Path(self.start_policy).is_file()
        ):
            raise DojoConfigError(
                f"loop start_policy={self.start_policy!r} must be 'naive' or a policy checkpoint "
                "file (policy.pt or checkpoint.pt)."
            )
        for name, high in (
            ("drive_minutes", None),
            ("budget_minutes", None),
            ("lr", None),
            ("alpha", 0.5),
            ("val_share", 0.9),
        ):
            value = number(f"loop {name}", getattr(self, name), 0.0, high, low_open=True)
            store_canonical(self, name, value)
        store_canonical(self, "sample_normal", share("loop sample_normal", self.sample_normal))
        choice("loop net", self.net, NET_KINDS)
        if self.net == "occupancy":
            raise DojoConfigError("loop net='occupancy' cannot drive; use 'policy' or 'both'.")
        choice("loop size", self.size, SIZES)
        for name in ("hazard_window_s", "takeover_window_s"):
            lo, hi = getattr(self, name)
            if not lo < hi:
                raise DojoConfigError(f"loop {name}={(lo, hi)!r} must start before it ends.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


__all__ = ["HAZARD_TRIGGERS", "LABEL_SOURCES", "TAKEOVER_TRIGGERS", "LoopConfig"]
