"""`dojo world render`: what the ego's cameras see beside the ground-truth occupancy grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from dojo.errors import DojoConfigError
from dojo.world.camera import CameraRig, render
from dojo.world.occupancy import OccupancySpec, occupancy
from dojo.world.picture import mosaic, save_gif, save_png
from dojo.world.scenarios import Hazard, check_family, check_seed
from dojo.world.world import DT_S, World

DEFAULT_MOMENT_S = 5.0
HAZARD_LEAD_S = 1.5  # show a hazard this long after it starts, when it is in view


def _drive_to(world: World, t_s: float, driver: str) -> None:
    act = world.expert_action if driver == "expert" else world.naive_action
    for _ in range(int(round(t_s / DT_S))):
        world.step(act())


def _default_moment(world: World) -> float:
    times = world.hazard_time_s[0][
        np.isfinite(world.hazard_time_s[0]) & (world.hazard_kind[0] != Hazard.NONE)
    ]
    return float(times.min() + HAZARD_LEAD_S) if len(times) else DEFAULT_MOMENT_S


def frame_of(world: World, rig: CameraRig, spec: OccupancySpec, caption: str) -> Image.Image:
    """The mosaic of world 0 as it is now."""
    frames = render(world.roads, world.vehicles, rig, worlds=np.array([0]))[0]
    grid = occupancy(world.roads, world.vehicles, spec, worlds=np.array([0]))[0]
    return mosaic(frames, grid, rig.names, caption=caption)


def _caption(world: World, family: str, seed: int) -> str:
    ttc = world.perception.ttc_s[0, 0]
    ttc_txt = f"{ttc:.1f} s" if np.isfinite(ttc) else "-"
    return f"{family} seed {seed}  t={world.time_s[0]:.1f} s  v={world.vehicles.v[0, 0]:.1f} m/s  TTC {ttc_txt}"


def _check(family: str, seed: int, driver: str, at_s: float | None) -> tuple[str, int]:
    if driver not in ("expert", "naive"):
        raise DojoConfigError(f"Unknown driver {driver!r}; choose expert or naive.")
    if at_s is not None and not 0 <= at_s <= 600:
        raise DojoConfigError(f"--at {at_s!r} must be between 0 and 600 s.")
    return check_family(family), check_seed(seed)


def render_moment(
    family: str,
    seed: int,
    out: str | Path,
    at_s: float | None = None,
    driver: str = "expert",
    rig: CameraRig | None = None,
    spec: OccupancySpec | None = None,
) -> Path:
    """Write a PNG mosaic of scenario (family, seed) at ``at_s`` (default: just after its first hazard)."""
    family, seed = _check(family, seed, driver, at_s)
    rig, spec = rig or CameraRig.default(), spec or OccupancySpec()
    world = World(family, seeds=[seed])
    _drive_to(world, _default_moment(world) if at_s is None else at_s, driver)
    return save_png(frame_of(world, rig, spec, _caption(world, family, seed)), out)


def render_clip(
    family: str,
    seed: int,
    out: str | Path,
    seconds: float = 4.0,
    driver: str = "expert",
    at_s: float | None = None,
    rig: CameraRig | None = None,
    spec: OccupancySpec | None = None,
) -> int:
    """Write an animated GIF of ``seconds`` around the moment; returns the number of frames."""
    family, seed = _check(family, seed, driver, at_s)
    if not 0 < seconds <= 60:
        raise DojoConfigError(f"--seconds {seconds!r} must be in (0, 60] for a GIF.")
    rig, spec = rig or CameraRig.default(), spec or OccupancySpec()
    world = World(family, seeds=[seed])
    start = max((_default_moment(world) if at_s is None else at_s) - 0.5 * seconds, 0.0)
    _drive_to(world, start, driver)
    act = world.expert_action if driver == "expert" else world.naive_action
    images = []
    for _ in tqdm(range(int(round(seconds / DT_S))), desc="render", unit="frame", leave=False):
        images.append(frame_of(world, rig, spec, _caption(world, family, seed)))
        world.step(act())
    save_gif(images, out, fps=1.0 / DT_S)
    return len(images)
