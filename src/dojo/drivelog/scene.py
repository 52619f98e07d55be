"""The ``/scene`` channel: every object around the ego at each decision step, as foxglove.SceneUpdate.

One message per step holds the whole scene: a deletion of everything before it (type ALL), then
one entity per object (:class:`~dojo.world.scene.SceneObjects`), in the ``world`` frame, each a
single cube coloured by kind so Foxglove's 3D panel shows the traffic. An entity's ``id`` is the
object id as text; its box is the cube (``size`` = length, width, height; ``pose`` = the centre,
``z`` = height / 2, turned by the heading about z); its ``metadata`` holds, as strings (Foxglove's
KeyValuePair), ``kind``, ``speed_mps``, ``lane``, ``s_m`` and ``d_m``, the numbers as Python's
shortest round-trip repr, so a reader gets back exactly what was written.

The writer formats each entity with one template (this runs for every object of every step);
the reader parses a message with one ``json.loads`` and builds each column in one pass. A message
that does not parse, or parses to a scene that is not one (a missing field, a number that is not
finite, two objects with one id), is a :class:`~dojo.errors.CorruptLogError` naming the channel
and the time.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from dojo.drivelog.checks import stamp
from dojo.drivelog.format import SCENE_TOPIC, WORLD_FRAME
from dojo.errors import ConfigError, CorruptLogError
from dojo.world.scene import FIELD_NAMES, KIND_NAMES, SceneObjects

DELETE_ALL = 1  # foxglove.SceneEntityDeletionType.ALL

# RGBA of each kind's cube: the ego green, cars blue, trucks white, barriers orange, debris brown
KIND_RGBA = {
    "car": (0.24, 0.35, 0.78, 0.9),
    "truck": (0.84, 0.84, 0.78, 0.9),
    "barrier": (0.96, 0.49, 0.08, 0.9),
    "debris": (0.37, 0.25, 0.16, 0.9),
    "ego": (0.15, 0.75, 0.3, 0.9),
}
METADATA_KEYS = ("kind", "speed_mps", "lane", "s_m", "d_m")

_COLOR = {k: '{{"r":{},"g":{},"b":{},"a":{}}}'.format(*rgba) for k, rgba in KIND_RGBA.items()}
# one entity; %-slots: timestamp, id, kind, speed, lane, s, d, x, y, z, qz, qw, l, w, h, colour
_ENTITY = (
    '{"timestamp":%s,"frame_id":"' + WORLD_FRAME + '","id":"%d",'
    '"lifetime":{"sec":0,"nsec":0},"frame_locked":false,"metadata":['
    '{"key":"kind","value":"%s"},{"key":"speed_mps","value":"%r"},{"key":"lane","value":"%d"},'
    '{"key":"s_m","value":"%r"},{"key":"d_m","value":"%r"}],"arrows":[],'
    '"cubes":[{"pose":{"position":{"x":%r,"y":%r,"z":%r},'
    '"orientation":{"x":0,"y":0,"z":%r,"w":%r}},"size":{"x":%r,"y":%r,"z":%r},"color":%s}],'
    '"spheres":[],"cylinders":[],"lines":[],"triangles":[],"texts":[],"models":[]}'
)
assert set(KIND_RGBA) == set(KIND_NAMES)


def scene_message(ns: int, objects: SceneObjects) -> bytes:
    """The foxglove.SceneUpdate JSON of ``objects`` at log time ``ns`` [ns]."""
    if not isinstance(objects, SceneObjects):
        raise ConfigError(
            f"objects={type(objects).__name__} must be a SceneObjects (dojo.world.scene)."
        )
    sec, nsec = divmod(ns, 1_000_000_000)
    ts = f'{{"sec":{sec},"nsec":{nsec}}}'
    half = 0.5 * objects.yaw_rad
    columns = zip(
        objects.id.tolist(),
        objects.kind.tolist(),
        objects.speed_mps.tolist(),
        objects.lane.tolist(),
        objects.s_m.tolist(),
        objects.d_m.tolist(),
        objects.x_m.tolist(),
        objects.y_m.tolist(),
        (0.5 * objects.height_m).tolist(),
        np.sin(half).tolist(),
        np.cos(half).tolist(),
        objects.length_m.tolist(),
        objects.width_m.tolist(),
        objects.height_m.tolist(),
        strict=True,
    )
    color = _COLOR
    entities = ",".join(
        [
            _ENTITY % (ts, i, k, v, lane, s, d, x, y, z, qz, qw, ln, wd, ht, color[k])
            for i, k, v, lane, s, d, x, y, z, qz, qw, ln, wd, ht in columns
        ]
    )
    head = f'{{"deletions":[{{"timestamp":{ts},"type":{DELETE_ALL},"id":""}}],"entities":['
    return (head + entities + "]}").encode()


class SceneFrame(NamedTuple):
    """One ``/scene`` message: its drive time [s] and its objects."""

    t_s: float
    objects: SceneObjects


def _bad_scene(t: float, why: str) -> CorruptLogError:
    reason = f"the {SCENE_TOPIC} message at {t:.3f} s is malformed ({why})"
    return CorruptLogError(f"The drive log is corrupt: {reason}.", reason=reason)


def decode_scene(data: bytes, t: float) -> SceneFrame:
    """A ``/scene`` message as a :class:`SceneFrame`; CorruptLogError if it is not a scene."""
    try:
        entities = json.loads(data)["entities"]
        n = len(entities)
        cubes = [e["cubes"][0] for e in entities]
        poses = [c["pose"] for c in cubes]
        pos = [p["position"] for p in poses]
        rot = [p["orientation"] for p in poses]
        size = [c["size"] for c in cubes]
        meta = [{kv["key"]: kv["value"] for kv in e["metadata"]} for e in entities]

        def floats(items: list[dict[str, Any]], key: str) -> np.ndarray:
            return np.fromiter((float(m[key]) for m in items), np.float64, n)

        qz, qw = floats(rot, "z"), floats(rot, "w")
        objects = SceneObjects(
            id=np.fromiter((int(e["id"]) for e in entities), np.int64, n),
            kind=np.array([m["kind"] for m in meta], dtype=str).reshape(n),
            x_m=floats(pos, "x"),
            y_m=floats(pos, "y"),
            yaw_rad=np.remainder(2.0 * np.arctan2(qz, qw) + math.pi, 2 * math.pi) - math.pi,
            speed_mps=floats(meta, "speed_mps"),
            length_m=floats(size, "x"),
            width_m=floats(size, "y"),
            height_m=floats(size, "z"),
            lane=np.fromiter((int(m["lane"]) for m in meta), np.int64, n),
            s_m=floats(meta, "s_m"),
            d_m=floats(meta, "d_m"),
        )
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
        raise _bad_scene(t, f"{type(e).__name__}: {e}") from e
    except ConfigError as e:
        raise _bad_scene(t, str(e).rstrip(".")) from e
    return SceneFrame(t, objects)


@dataclass(frozen=True)
class SceneLog:
    """The ``/scene`` channel of one drive log: T messages holding N object rows in all.

    ``times_s`` (T,) drive time of each message [s], increasing; rows ``offsets[i]:offsets[i+1]``
    of every column are message i's objects; ``columns`` maps each field of
    :class:`~dojo.world.scene.SceneObjects` to its (N,) array. A log without a scene channel
    reads as T = 0.
    """

    times_s: np.ndarray  # (T,) [s]
    offsets: np.ndarray  # (T + 1,) int64
    columns: dict[str, np.ndarray]  # field -> (N,)

    def __len__(self) -> int:
        return len(self.times_s)

    @property
    def t_s(self) -> np.ndarray:
        """(N,) drive time of each object row [s]."""
        return np.repeat(self.times_s, np.diff(self.offsets))

    def frame(self, i: int) -> SceneObjects:
        """The objects of message ``i``."""
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return SceneObjects(**{k: v[a:b] for k, v in self.columns.items()})

    @classmethod
    def of(cls, frames: list[SceneFrame]) -> SceneLog:
        """The frames in time order, their columns joined (one copy per column)."""
        frames = sorted(frames, key=lambda f: f.t_s)
        counts = [len(f.objects) for f in frames]
        offsets = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64)
        empty = SceneObjects(**{k: np.zeros(0) for k in FIELD_NAMES})
        columns = {
            k: np.concatenate([getattr(f.objects, k) for f in frames] or [getattr(empty, k)])
            for k in FIELD_NAMES
        }
        return cls(np.array([f.t_s for f in frames], dtype=np.float64), offsets, columns)


def calibration_message(
    ns: int, frame_id: str, width: int, height: int, intrinsics: tuple[float, ...]
) -> dict[str, Any]:
    """A foxglove.CameraCalibration of an ideal pinhole: ``intrinsics`` = (f, cx, cy) [px]."""
    f, cx, cy = intrinsics
    return {
        "timestamp": stamp(ns),
        "frame_id": frame_id,
        "width": width,
        "height": height,
        "distortion_model": "plumb_bob",
        "D": [0.0] * 5,
        "K": [f, 0.0, cx, 0.0, f, cy, 0.0, 0.0, 1.0],
        "R": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        "P": [f, 0.0, cx, 0.0, 0.0, f, cy, 0.0, 0.0, 0.0, 1.0, 0.0],
    }


__all__ = [
    "KIND_RGBA",
    "METADATA_KEYS",
    "SceneFrame",
    "SceneLog",
    "calibration_message",
    "decode_scene",
    "scene_message",
]
