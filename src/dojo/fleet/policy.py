"""The on-board network slot: a trained checkpoint, or one of the built-in baselines.

A policy maps the fleet's state to the ego's action (a :class:`dojo.world.world.EgoAction`:
acceleration [m/s^2], steering [rad] and the lane it heads for) for every car at once: one call
per decision step for the whole fleet, so a network runs one batched forward pass (on the GPU
when there is one). A policy only reads the world; the fleet decides which action ``step`` gets.

- ``naive``: constant speed, keep the lane (reads the world directly).
- ``expert``: the human-driver model with perfect perception (reads the world directly).
- ``careful``: the same model seeing only what the car's camera rig can show
  (:func:`dojo.world.actions.careful_action`; it reads the world through the visibility rule).
- a checkpoint path: a :class:`dojo.nets.DrivingPolicy` that sees only what the car sees: the
  last k frames of its cameras, its speed and the route command.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from dojo.errors import DojoConfigError
from dojo.fleet.config import BASELINES, PLANNER_PREFIX
from dojo.fleet.planner import LeadTracker, plan, seen_by_rig
from dojo.nets.targets import decode_targets
from dojo.world.actions import careful_action
from dojo.world.camera import CameraRig
from dojo.world.world import EgoAction, World

Controls = EgoAction  # the older name of what a policy returns (dojo.eval.bench uses it)


class Policy(Protocol):
    name: str
    frames: int  # camera frames of history it reads; 0: it reads the world's state instead

    def act(self, world: World, images: np.ndarray | None) -> EgoAction:
        """The action of every car; ``images`` is uint8 (N, cams, k, H, W[, 3]) when ``frames`` > 0."""
        ...


class Baseline:
    """A built-in driver that reads the world's ground truth."""

    frames = 0

    def __init__(self, name: str, act: Callable[[World], EgoAction]) -> None:
        self.name, self._act = name, act

    def act(self, world: World, images: np.ndarray | None) -> EgoAction:
        return self._act(world)


class _CameraNet:
    """A checkpoint net the cars run on their own camera frames, batched over the fleet."""

    def __init__(self, path: Path, rig: CameraRig, kind: str, device: str | None) -> None:
        import torch

        from dojo.nets.checkpoint import load_net

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model: Any = load_net(path, kind, device=self.device)
        cfg: Any = self.model.config
        cam = rig.cameras[0]
        want = (len(rig.cameras), cam.height_px, cam.width_px, rig.rgb)
        have = (cfg.cameras, cfg.height, cfg.width, cfg.rgb)
        if want != have:
            raise DojoConfigError(
                f"Checkpoint {path} is incompatible with this fleet: it reads {_rig_words(*have)}, "
                f"the cars carry {_rig_words(*want)}."
            )
        self.name, self.frames = str(path), int(cfg.frames)
        self._torch = torch

    def _run(self, world: World, images: np.ndarray | None) -> Any:
        """The net's outputs on ``images`` (see :meth:`_forward`), with one intra-op thread."""
        if images is None:
            raise DojoConfigError("A network policy needs camera images.")
        torch = self._torch
        # On a CPU the forward pass's floats depend on torch's intra-op thread count (reductions
        # are split by thread) and the cars follow them; one thread in every process makes a
        # drive the same bytes locally, on any number of workers and on Ray.
        threads = torch.get_num_threads() if self.device == "cpu" else 1
        if threads != 1:
            torch.set_num_threads(1)
        try:
            with torch.inference_mode():
                return self._forward(world, torch.from_numpy(images).to(self.device))
        finally:
            if threads != 1:
                torch.set_num_threads(threads)

    def _forward(self, world: World, images: Any) -> Any:
        raise NotImplementedError


class NetworkPolicy(_CameraNet):
    """A trained :class:`dojo.nets.DrivingPolicy`, batched over the fleet."""

    def __init__(self, path: Path, rig: CameraRig, device: str | None = None) -> None:
        super().__init__(path, rig, "policy", device)

    def act(self, world: World, images: np.ndarray | None) -> EgoAction:
        out = self._run(world, images)
        # the network picks the lane; the lane controller every driver uses steers to it
        return world.lane_shift_action(out[:, 0].astype(np.float64), out[:, 1])

    def _forward(self, world: World, images: Any) -> np.ndarray:
        """(N, 2): [accel m/s^2, lane shift] for the fleet's N cars."""
        torch = self._torch
        speed = torch.from_numpy(world.vehicles.v[:, 0].astype(np.float32)).to(self.device)
        command = torch.from_numpy(world.command).to(self.device)
        out: np.ndarray = self.model(images, speed, command).float().cpu().numpy()
        return out


class PerceptionPlanner(_CameraNet):
    """``planner:CHECKPOINT``: a ``--net perception`` net's planner heads drive the
    :mod:`dojo.fleet.planner` (perception -> planner), its lead kept by a :class:`LeadTracker`."""

    def __init__(self, path: Path, rig: CameraRig, device: str | None = None) -> None:
        super().__init__(path, rig, "perception", device)
        self.name = f"{PLANNER_PREFIX}{path}"
        self.tracker = LeadTracker()

    def act(self, world: World, images: np.ndarray | None) -> EgoAction:
        return plan(world, self.tracker.update(world, self._run(world, images)))

    def _forward(self, world: World, images: Any) -> np.ndarray:
        """(N, 7) decoded planner targets of the fleet's N cars."""
        encoded = self.model.planner_targets(images)
        return decode_targets(encoded.float().cpu().numpy())


def _rig_words(cams: int, height: int, width: int, rgb: bool) -> str:
    return f"{cams} cameras of {width}x{height} {'RGB' if rgb else 'grey'}"


def make_policy(spec: str, rig: CameraRig, device: str | None = None) -> Policy:
    """``naive``, ``expert``, ``careful`` (on ``rig``) or the path of a policy checkpoint."""
    if spec == "naive":
        return Baseline("naive", World.naive_action)
    if spec == "expert":
        return Baseline("expert", World.expert_action)
    if spec == "careful":
        return Baseline("careful", lambda world: careful_action(world, rig))
    if spec == "planner":
        tracker = LeadTracker()
        return Baseline(
            "planner", lambda world: plan(world, tracker.update(world, seen_by_rig(world, rig)))
        )
    if spec.startswith(PLANNER_PREFIX):
        return PerceptionPlanner(_checkpoint(spec.removeprefix(PLANNER_PREFIX)), rig, device)
    return NetworkPolicy(_checkpoint(spec), rig, device)


def _checkpoint(spec: str) -> Path:
    path = Path(spec)
    looks_like_path = path.suffix != "" or len(path.parts) > 1 or path.exists()
    if not looks_like_path:
        raise DojoConfigError(
            f"Unknown policy {spec!r}: give a baseline ({', '.join(BASELINES)}) or the path of a checkpoint file."
        )
    if not path.is_file():
        what = "is a folder, not a checkpoint file" if path.is_dir() else "does not exist"
        raise DojoConfigError(f"Checkpoint {spec} {what}.")
    return path
