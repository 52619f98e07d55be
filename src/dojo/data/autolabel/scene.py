"""A drive's logged scene as arrays, one row per frame and one column per object.

The ingested ``scene`` table (one row per object per frame, see :mod:`dojo.data.store`) is
pivoted into a :class:`SceneFrames`: frame ``f`` is the ``f``-th logged time, column ``k`` the
``k``-th distinct object id, the ego always column 0. Checks run before any labelling, so a
scene that disagrees with itself refuses the drive with the frame named.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dojo.errors import CorruptLogError
from dojo.world.drivers import CAREFUL_DRIVER, TRAFFIC_DRIVER
from dojo.world.road import Roads
from dojo.world.vehicles import Kind, Vehicles

EGO_ID = 0
# a scene's kinds by name, and the world's Kind each is driven as (the ego is a car)
KIND_NAMES = ("ego", "car", "truck", "barrier", "debris")
_AS_KIND = np.array([Kind.CAR, Kind.CAR, Kind.TRUCK, Kind.BARRIER, Kind.DEBRIS], dtype=np.int8)
_STATIC = np.array([False, False, False, True, True])
COLUMNS = (
    "t_s",
    "object_id",
    "kind",
    "x_m",
    "y_m",
    "yaw_rad",
    "speed_mps",
    "length_m",
    "width_m",
    "height_m",
    "lane",
    "s_m",
    "d_m",
)
_FLOATS = ("x_m", "y_m", "yaw_rad", "speed_mps", "length_m", "width_m", "height_m", "s_m", "d_m")


def _bad(drive: str, why: str) -> CorruptLogError:
    return CorruptLogError(f"Drive {drive}: its scene cannot be labelled: {why}.", reason=why)


@dataclass
class SceneFrames:
    """A scene: ``t_s`` (F,), ``ids`` (K,) (one drive) or (F, K) (frames of several, stacked
    by :func:`stack_frames`), and (F, K) arrays; the ego is column 0."""

    t_s: np.ndarray
    ids: np.ndarray
    present: np.ndarray  # (F, K) bool: the object is in the frame
    kind: np.ndarray  # (F, K) int8 index into KIND_NAMES (0 where absent)
    values: dict[str, np.ndarray]  # each of _FLOATS, (F, K) float64 (0 where absent)
    lane: np.ndarray  # (F, K) int64

    @property
    def frames(self) -> int:
        return len(self.t_s)

    def vehicles(self, roads: Roads, future_lane: np.ndarray | None = None) -> Vehicles:
        """The frames as a (F, K) batch of worlds the driver models run on (``roads``: F worlds).

        Speeds, positions and sizes are the logged ones; driver parameters are the stated
        assumptions above (the careful driver in the ego's slot). ``future_lane`` (F, K): where
        each object will be (hindsight); an object heading elsewhere is listed in both lanes,
        as the world lists a driver signalling a change.
        """
        nf, nk = self.present.shape
        veh = Vehicles.empty(nf, nk)
        v = self.values
        static = _STATIC[self.kind]
        veh.active[:] = self.present
        veh.driven[:] = self.present & ~static
        veh.kind[:] = _AS_KIND[self.kind]
        veh.s[:], veh.d[:], veh.v[:] = v["s_m"], v["d_m"], np.maximum(v["speed_mps"], 0.0)
        w = np.arange(nf)[:, None]
        _, _, road_heading = roads.to_xy(v["s_m"], v["d_m"], w)
        veh.psi[:] = np.mod(v["yaw_rad"] - road_heading + np.pi, 2.0 * np.pi) - np.pi
        for name in ("length", "width", "height"):
            getattr(veh, name)[:] = np.where(self.present, v[f"{name}_m"], 1.0)
        veh.target_lane[:] = self.lane if future_lane is None else future_lane
        for name, value in TRAFFIC_DRIVER.items():
            getattr(veh, name)[:] = value
        for name, value in CAREFUL_DRIVER.items():
            getattr(veh, name)[:, 0] = value
        veh.v0[:] = np.maximum(veh.v, 1.0)  # the traffic keeps its speed
        return veh


def take_frames(scene: SceneFrames, at: np.ndarray) -> SceneFrames:
    """The frames ``at`` of ``scene`` (indices into its frames)."""
    ids = scene.ids[at] if scene.ids.ndim == 2 else scene.ids
    values = {k: v[at] for k, v in scene.values.items()}
    return SceneFrames(
        scene.t_s[at], ids, scene.present[at], scene.kind[at], values, scene.lane[at]
    )


def stack_frames(scenes: list[SceneFrames]) -> SceneFrames:
    """The frames of several scenes one after another, padded to the widest (absent columns)."""
    k = max(s.present.shape[1] for s in scenes)

    def pad(a: np.ndarray, fill: object) -> np.ndarray:
        out = np.full((a.shape[0], k), fill, dtype=a.dtype)
        out[:, : a.shape[1]] = a
        return out

    def ids(s: SceneFrames) -> np.ndarray:
        return pad(np.broadcast_to(s.ids, s.present.shape), -1)

    return SceneFrames(
        np.concatenate([s.t_s for s in scenes]),
        np.concatenate([ids(s) for s in scenes]),
        np.concatenate([pad(s.present, False) for s in scenes]),
        np.concatenate([pad(s.kind, 0) for s in scenes]),
        {n: np.concatenate([pad(s.values[n], 0.0) for s in scenes]) for n in _FLOATS},
        np.concatenate([pad(s.lane, 0) for s in scenes]),
    )


def scene_frames(table: pa.Table, drive: str) -> SceneFrames:
    """Pivot one drive's ``scene`` rows (in log order) into frames; CorruptLogError if inconsistent."""
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise _bad(drive, f"the scene table lacks {', '.join(missing)}")
    if table.num_rows == 0:
        raise _bad(drive, "its scene is empty")
    t = table.column("t_s").to_numpy()
    ids = table.column("object_id").to_numpy().astype(np.int64)
    back = np.flatnonzero(np.diff(t) < 0)
    if len(back):
        i = int(back[0])
        raise _bad(drive, f"time goes backwards at t={t[i + 1]:.3f} s (after {t[i]:.3f} s)")
    times, frame = np.unique(t, return_inverse=True)
    uniq = np.unique(ids)
    if EGO_ID not in uniq:
        raise _bad(drive, f"the ego (object {EGO_ID}) is missing at t={times[0]:.3f} s")
    order = np.concatenate([[EGO_ID], uniq[uniq != EGO_ID]])
    col = np.searchsorted(np.sort(order[1:]), ids) + 1
    col[ids == EGO_ID] = 0
    nf, nk = len(times), len(order)
    present = np.zeros((nf, nk), dtype=bool)
    if np.any(np.bincount(frame * nk + col, minlength=nf * nk) > 1):
        dup = np.flatnonzero(np.bincount(frame * nk + col, minlength=nf * nk) > 1)[0]
        raise _bad(drive, f"object {order[dup % nk]} appears twice at t={times[dup // nk]:.3f} s")
    present[frame, col] = True
    no_ego = np.flatnonzero(~present[:, 0])
    if len(no_ego):
        raise _bad(drive, f"the ego (object {EGO_ID}) is missing at t={times[no_ego[0]]:.3f} s")
    values = {}
    for name in _FLOATS:
        a = np.zeros((nf, nk))
        a[frame, col] = table.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
        if not np.isfinite(a).all():
            f = int(np.flatnonzero(~np.isfinite(a).all(axis=1))[0])
            raise _bad(drive, f"{name} is not a finite number at t={times[f]:.3f} s")
        values[name] = a
    coded = pc.dictionary_encode(table.column("kind")).combine_chunks()
    names = coded.dictionary.to_pylist()
    unknown = sorted(set(names) - set(KIND_NAMES))
    if unknown:
        raise _bad(drive, f"its scene holds objects of unknown kind {unknown[0]!r}")
    lookup = np.array([KIND_NAMES.index(n) for n in names], dtype=np.int8)
    kind = np.zeros((nf, nk), dtype=np.int8)
    kind[frame, col] = lookup[coded.indices.to_numpy(zero_copy_only=False)]
    lane = np.zeros((nf, nk), dtype=np.int64)
    lane[frame, col] = table.column("lane").to_numpy(zero_copy_only=False).astype(np.int64)
    return SceneFrames(times, order, present, kind, values, lane)


__all__ = [
    "CAREFUL_DRIVER",
    "COLUMNS",
    "EGO_ID",
    "KIND_NAMES",
    "TRAFFIC_DRIVER",
    "SceneFrames",
    "scene_frames",
    "stack_frames",
    "take_frames",
]
