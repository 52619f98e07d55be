"""Named camera rigs: the registry :meth:`dojo.world.camera.CameraRig.named` builds from.

Every rig here takes the resolution and colour mode as arguments (all cameras of a rig share one
resolution: the networks read ``(B, cams, frames, H, W)``), so a drive picks its rig by name and
its image size separately.

``quad`` is the rig Dojo drove with first: four 90-degree cameras, front, left, right and rear,
all drawing 120 m. At 96x48 px its front camera has f = 48 px, so a car 112 m ahead covers about
0.5 px: no label that reacts to a stalled car at braking distance can be learnt from it.

``penta`` (the default) adds what production rigs carry for that: forward cameras of different
reach. Its wide forward camera, ``front``, is the quad's 90-degree front (120 m: cut-ins, the
lanes beside the ego), its ``narrow`` one 18 degrees (f = 303 px, 250 m: debris and stalled cars at braking
distance, the leader at any following gap); left, right and rear are the quad's. ``triple`` adds
a main camera (50 degrees, 150 m) between them, as Tesla's three forward cameras: measured, it
changed nothing the careful driver did (the same interventions in 230,400 held-out decisions),
so the default goes without it: every camera costs network compute. The hazard-pixel table and
the measurements behind these choices are in docs/rig.md.

The ``rig`` setting of drives and evaluations (:func:`rig_setting`) names one of :data:`RIGS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dojo.errors import ConfigError
from dojo.settings import setting
from dojo.world.camera import CameraRig, CameraSpec

DEFAULT_RIG = "penta"

RigBuilder = Callable[[bool, int, int], CameraRig]


def _cam(
    name: str,
    mount: tuple[float, float, float],
    yaw_deg: float,
    hfov_deg: float,
    range_m: float,
    width: int,
    height: int,
) -> CameraSpec:
    x, y, z = mount
    return CameraSpec(name, x, y, z, yaw_deg, hfov_deg, width, height, 0.4, range_m)


WINDSCREEN = (0.5, 0.0, 1.3)  # [m] mount of the forward cameras, ego frame


def _front(width: int, height: int) -> CameraSpec:
    """The 90-degree forward camera every rig carries (the wide one where there are several)."""
    return _cam("front", WINDSCREEN, 0.0, 90.0, 120.0, width, height)


def _narrow(width: int, height: int) -> CameraSpec:
    return _cam("narrow", WINDSCREEN, 0.0, 18.0, 250.0, width, height)


def _around(width: int, height: int) -> tuple[CameraSpec, ...]:
    """The side and rear cameras every rig carries: 90 degrees, 120 m."""
    return (
        _cam("left", (0.0, 0.9, 1.2), 90.0, 90.0, 120.0, width, height),
        _cam("right", (0.0, -0.9, 1.2), -90.0, 90.0, 120.0, width, height),
        _cam("rear", (-2.2, 0.0, 1.1), 180.0, 90.0, 120.0, width, height),
    )


def quad(rgb: bool, width: int, height: int) -> CameraRig:
    """Four 90-degree cameras covering all around: front, left, right, rear (120 m)."""
    return CameraRig((_front(width, height), *_around(width, height)), rgb=rgb)


def penta(rgb: bool, width: int, height: int) -> CameraRig:
    """Wide (``front``: 90 deg, 120 m) and ``narrow`` (18 deg, 250 m) forward cameras behind the
    windscreen, plus left, right and rear (90 deg, 120 m): the quad rig and a narrow camera."""
    forward = (_front(width, height), _narrow(width, height))
    return CameraRig((*forward, *_around(width, height)), rgb=rgb)


def triple(rgb: bool, width: int, height: int) -> CameraRig:
    """Wide (``front``: 90 deg, 120 m), ``main`` (50 deg, 150 m) and ``narrow`` (18 deg, 250 m)
    forward cameras behind the windscreen, plus left, right and rear (90 deg, 120 m)."""
    main = _cam("main", WINDSCREEN, 0.0, 50.0, 150.0, width, height)
    forward = (_front(width, height), main, _narrow(width, height))
    return CameraRig((*forward, *_around(width, height)), rgb=rgb)


RIGS: dict[str, RigBuilder] = {"quad": quad, "penta": penta, "triple": triple}


def check_rig(name: object) -> str:
    """``name`` if it names a rig of :data:`RIGS`, else one clear :class:`ConfigError`."""
    if not isinstance(name, str) or name not in RIGS:
        raise ConfigError(f"Unknown camera rig {name!r}; choose one of: {', '.join(RIGS)}.")
    return name


def build(name: str, rgb: bool = False, width: int = 96, height: int = 48) -> CameraRig:
    return RIGS[check_rig(name)](rgb, width, height)


def rig_setting() -> Any:
    """The ``rig`` field of a drive's or an evaluation's config, declared here once."""
    return setting(
        DEFAULT_RIG,
        help=f"camera rig the cars carry: {' | '.join(RIGS)} (default %(default)s)",
        choices=tuple(RIGS),
    )


__all__ = ["DEFAULT_RIG", "RIGS", "build", "check_rig", "penta", "quad", "rig_setting", "triple"]
