"""The scene around one ego: every active vehicle and obstacle of its world, as a struct of arrays.

:class:`SceneObjects` is what a drive log's ``/scene`` channel carries at one moment (see
:mod:`dojo.drivelog.scene`) and what a reader gets back; :func:`scene_objects` builds it from a
:class:`~dojo.world.world.World`, the one place that turns the world's Frenet state into boxes in
the world frame, so the fleet's logs and anything else that needs a scene agree.

In simulation the scene is exact: positions, speeds and the Frenet coordinates are the world's
own. An object's ``id`` is its vehicle slot (0 is the ego); traffic that leaves the window around
the ego is recycled to the window's other end in the same slot, so an id keeps its vehicle
except at such a jump (hundreds of metres in ``s_m``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import numpy as np

from dojo.errors import ConfigError
from dojo.world.vehicles import Kind

if TYPE_CHECKING:
    from dojo.world.world import World

EGO_KIND = "ego"
KIND_NAMES = (*(k.name.lower() for k in Kind), EGO_KIND)  # car, truck, barrier, debris, ego

_INTEGER = ("id", "lane")
_TEXT = ("kind",)
_POSITIVE = ("length_m", "width_m", "height_m")


@dataclass(frozen=True)
class SceneObjects:
    """N objects at one moment, each field an (N,) array; positions in the world frame.

    ``id``: int64, unique (the vehicle slot; 0 is the ego). ``kind``: one of :data:`KIND_NAMES`.
    ``x_m``, ``y_m``: box centre [m]; ``yaw_rad``: heading about z [rad]; ``speed_mps`` [m/s];
    ``length_m``, ``width_m``, ``height_m``: the box [m], > 0; ``lane``: int64, the nearest
    lane (0 the rightmost, -1 a ramp); ``s_m``, ``d_m``: Frenet position along the road and
    left of its reference line [m]. Arrays are converted on construction and checked: one
    value per object in every field, finite numbers, unique ids, known kinds; anything else is
    a :class:`~dojo.errors.ConfigError` naming the field.
    """

    id: np.ndarray
    kind: np.ndarray
    x_m: np.ndarray
    y_m: np.ndarray
    yaw_rad: np.ndarray
    speed_mps: np.ndarray
    length_m: np.ndarray
    width_m: np.ndarray
    height_m: np.ndarray
    lane: np.ndarray
    s_m: np.ndarray
    d_m: np.ndarray

    def __post_init__(self) -> None:
        n = None
        for f in fields(self):
            value = np.asarray(getattr(self, f.name))
            who = f"scene objects {f.name}"
            if value.ndim != 1:
                raise ConfigError(
                    f"{who} must be a 1-D array (one value per object); got shape {value.shape}."
                )
            if n is None:
                n = len(value)
            elif len(value) != n:
                raise ConfigError(
                    f"{who} has {len(value)} values but id has {n}; every field needs one per object."
                )
            if f.name in _TEXT:
                value = value.astype(str) if len(value) else np.zeros(0, dtype="<U1")
                bad = [k for k in np.unique(value).tolist() if k not in KIND_NAMES]
                if bad:
                    raise ConfigError(f"{who}={bad[0]!r} must be one of {', '.join(KIND_NAMES)}.")
            elif f.name in _INTEGER:
                if len(value) and (value.dtype == bool or value.dtype.kind not in "iu"):
                    raise ConfigError(f"{who} must hold whole numbers; got {value.dtype} values.")
                value = value.astype(np.int64)
            else:
                if value.dtype == bool or (len(value) and value.dtype.kind not in "iuf"):
                    raise ConfigError(f"{who} must hold numbers; got {value.dtype} values.")
                value = value.astype(np.float64)
                finite = np.isfinite(value)
                if not finite.all():
                    i = int(np.argmin(finite))
                    raise ConfigError(f"{who}[{i}]={value[i]!r} must be a finite number.")
                if f.name in _POSITIVE and len(value) and value.min() <= 0:
                    i = int(np.argmin(value))
                    raise ConfigError(f"{who}[{i}]={value[i]!r} must be > 0 m.")
            object.__setattr__(self, f.name, value)
        ids = self.id
        if len(np.unique(ids)) != len(ids):
            uniq, counts = np.unique(ids, return_counts=True)
            raise ConfigError(
                f"scene objects id {int(uniq[counts > 1][0])} repeats; ids must be unique in a scene."
            )

    def __len__(self) -> int:
        return len(self.id)

    def take(self, rows: np.ndarray | slice) -> SceneObjects:
        """The objects at ``rows`` (an index array, a mask or a slice), as a new struct."""
        return SceneObjects(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})


FIELD_NAMES = tuple(f.name for f in fields(SceneObjects))


def scene_objects(world: World, w: int) -> SceneObjects:
    """Every active object of world ``w`` now, the ego (id 0, kind ``ego``) first."""
    veh, roads = world.vehicles, world.roads
    slots = np.flatnonzero(veh.active[w])  # (N,) ascending: the ego's slot 0 first
    rows = np.full(len(slots), w)
    s, d = veh.s[w, slots], veh.d[w, slots]
    x, y, heading = roads.to_xy(s, d, rows)
    kinds = np.array(KIND_NAMES[: len(Kind)])[veh.kind[w, slots]]
    kinds[slots == 0] = EGO_KIND
    return SceneObjects(
        id=slots.astype(np.int64),
        kind=kinds,
        x_m=x,
        y_m=y,
        yaw_rad=np.remainder(heading + veh.psi[w, slots] + np.pi, 2 * np.pi) - np.pi,
        speed_mps=veh.v[w, slots],
        length_m=veh.length[w, slots],
        width_m=veh.width[w, slots],
        height_m=veh.height[w, slots],
        lane=world.perception.index.lane[w, slots],
        s_m=s,
        d_m=d,
    )


__all__ = ["EGO_KIND", "FIELD_NAMES", "KIND_NAMES", "SceneObjects", "scene_objects"]
