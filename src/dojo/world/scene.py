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
_KIND_SET = frozenset(KIND_NAMES)


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
        # kept lean: a reader builds one of these per logged moment
        n = len(np.asarray(self.id).reshape(-1))
        for name in FIELD_NAMES:
            value = np.asarray(getattr(self, name))
            who = f"scene objects {name}"
            if value.ndim != 1:
                raise ConfigError(
                    f"{who} must be a 1-D array (one value per object); got shape {value.shape}."
                )
            if len(value) != n:
                raise ConfigError(
                    f"{who} has {len(value)} values but id has {n}; every field needs one per object."
                )
            kind = value.dtype.kind
            if name in _TEXT:
                value = value.astype(str, copy=False) if n else np.zeros(0, dtype="<U1")
                bad = set(value.tolist()) - _KIND_SET
                if bad:
                    raise ConfigError(
                        f"{who}={sorted(bad)[0]!r} must be one of {', '.join(KIND_NAMES)}."
                    )
            elif name in _INTEGER:
                if n and kind not in "iu":
                    raise ConfigError(f"{who} must hold whole numbers; got {value.dtype} values.")
                value = value.astype(np.int64, copy=False)
            else:
                if n and kind not in "iuf":
                    raise ConfigError(f"{who} must hold numbers; got {value.dtype} values.")
                value = value.astype(np.float64, copy=False)
                if not np.isfinite(value).all():
                    i = int(np.argmin(np.isfinite(value)))
                    raise ConfigError(f"{who}[{i}]={value[i]!r} must be a finite number.")
                if name in _POSITIVE and n and value.min() <= 0:
                    i = int(np.argmin(value))
                    raise ConfigError(f"{who}[{i}]={value[i]!r} must be > 0 m.")
            object.__setattr__(self, name, value)
        ids = self.id.tolist()
        if len(set(ids)) != n:
            twice = next(i for k, i in enumerate(ids) if i in ids[:k])
            raise ConfigError(f"scene objects id {twice} repeats; ids must be unique in a scene.")

    def __len__(self) -> int:
        return len(self.id)

    def take(self, rows: np.ndarray | slice) -> SceneObjects:
        """The objects at ``rows`` (an index array, a mask or a slice), as a new struct."""
        return SceneObjects(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})


FIELD_NAMES = tuple(f.name for f in fields(SceneObjects))


def scene_objects(world: World, w: int) -> SceneObjects:
    """Every active object of world ``w`` now, the ego (id 0, kind ``ego``) first."""
    return scenes_of(world, np.array([w]))[0]


def scenes_of(world: World, worlds: np.ndarray | None = None) -> list[SceneObjects]:
    """:func:`scene_objects` of each world in ``worlds`` (all if None), computed in one batch."""
    rows = np.arange(world.num_worlds) if worlds is None else np.asarray(worlds, dtype=np.int64)
    veh = world.vehicles
    s, d = veh.s[rows], veh.d[rows]  # (n, V)
    x, y, heading = world.roads.to_xy(s, d, rows[:, None])
    yaw = np.remainder(heading + veh.psi[rows] + np.pi, 2 * np.pi) - np.pi
    kinds = np.array(KIND_NAMES[: len(Kind)])[veh.kind[rows]]
    kinds[:, 0] = EGO_KIND
    lane = world.perception.index.lane[rows]
    out = []
    for i, w in enumerate(rows.tolist()):
        slots = np.flatnonzero(veh.active[w])  # ascending: the ego's slot 0 first
        out.append(
            SceneObjects(
                id=slots,
                kind=kinds[i, slots],
                x_m=x[i, slots],
                y_m=y[i, slots],
                yaw_rad=yaw[i, slots],
                speed_mps=veh.v[w, slots],
                length_m=veh.length[w, slots],
                width_m=veh.width[w, slots],
                height_m=veh.height[w, slots],
                lane=lane[i, slots],
                s_m=s[i, slots],
                d_m=d[i, slots],
            )
        )
    return out


__all__ = ["EGO_KIND", "FIELD_NAMES", "KIND_NAMES", "SceneObjects", "scene_objects", "scenes_of"]
