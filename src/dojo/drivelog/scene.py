"""The ``/scene`` channel: every object around the ego at each decision step, as foxglove.SceneUpdate.

One message per step holds the whole scene: a deletion of everything before it (type ALL), then
one entity per object (:class:`~dojo.world.scene.SceneObjects`), in the ``world`` frame, each a
single cube coloured by kind so Foxglove's 3D panel shows the traffic. An entity's ``id`` is the
object id as text; its box is the cube (``size`` = length, width, height; ``pose`` = the centre,
``z`` = height / 2, turned by the heading about z); its ``metadata`` holds, as strings (Foxglove's
KeyValuePair), ``kind``, ``speed_mps``, ``lane``, ``s_m`` and ``d_m``, the numbers as Python's
shortest round-trip repr, so a reader gets back exactly what was written there; the cube
(position, size) is written to 1 mm and its quaternion to 1e-6 (:data:`CUBE_TOLERANCE_M`,
:data:`YAW_TOLERANCE_RAD`).

The writer formats each entity with one template (this runs for every object of every step);
the reader matches the same template with one regular expression and parses all numbers of a
message in one call, falling back to ``json.loads`` for any other spelling of the schema. A message
that does not parse, or parses to a scene that is not one (a missing field, a number that is not
finite, two objects with one id), is a :class:`~dojo.errors.CorruptLogError` naming the channel
and the time.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from dojo.drivelog.checks import stamp
from dojo.drivelog.format import SCENE_TOPIC, WORLD_FRAME
from dojo.errors import ConfigError, CorruptLogError
from dojo.world.scene import FIELD_NAMES, KIND_NAMES, SceneObjects

DELETE_ALL = 1  # foxglove.SceneEntityDeletionType.ALL
CUBE_TOLERANCE_M = 5e-4  # x_m, y_m and the box read back within this of what was written [m]
YAW_TOLERANCE_RAD = 5e-6  # the heading, from a quaternion written to 1e-6

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
# one entity; %-slots: timestamp, id, kind, speed, lane, s, d, x, y, z, qz, qw, l, w, h, colour.
# The Frenet coordinates and the speed, what a driver model reads, are written exactly (repr);
# the cube, what the 3D panel and the world-frame columns read, to 1 mm (the quaternion to 1e-6,
# the heading to about 2e-6 rad), which keeps the compressed log smaller.
_ENTITY = (
    '{"timestamp":%s,"frame_id":"' + WORLD_FRAME + '","id":"%d",'
    '"lifetime":{"sec":0,"nsec":0},"frame_locked":false,"metadata":['
    '{"key":"kind","value":"%s"},{"key":"speed_mps","value":"%r"},{"key":"lane","value":"%d"},'
    '{"key":"s_m","value":"%r"},{"key":"d_m","value":"%r"}],"arrows":[],'
    '"cubes":[{"pose":{"position":{"x":%.3f,"y":%.3f,"z":%.3f},'
    '"orientation":{"x":0,"y":0,"z":%.6f,"w":%.6f}},"size":{"x":%.3f,"y":%.3f,"z":%.3f},'
    '"color":%s}],"spheres":[],"cylinders":[],"lines":[],"triangles":[],"texts":[],"models":[]}'
)
# The same layout read back, each slot of the template as a pattern (the fast path of
# decode_scene): any numbers and colour, every other byte as written
_NUMBER = rb"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
_STAMP = rb'\{"sec":\d+,"nsec":\d+\}'
_RGBA = rb'\{"r":%s,"g":%s,"b":%s,"a":%s\}' % ((_NUMBER,) * 4)
_SLOTS: tuple[bytes, ...] = (_STAMP, rb"(-?\d+)", rb"([a-z]+)") + (b"(%s)" % _NUMBER,) * 6
_SLOTS += (_NUMBER,) + (b"(%s)" % _NUMBER,) * 5 + (_RGBA,)  # z (height / 2) is not read
_ENTITY_RE = re.compile(
    b"".join(
        re.escape(part.encode()) + slot
        for part, slot in zip(re.split(r"%[sdr]|%\.\df", _ENTITY), _SLOTS + (b"",), strict=True)
    )
)
_HEAD = re.compile(
    re.escape(b'{"deletions":[{"timestamp":')
    + _STAMP
    + re.escape(b',"type":1,"id":""}],"entities":[')
)
# the groups of _ENTITY_RE in order: object fields, and the quaternion's z and w
_GROUPS = ("id", "kind", "speed_mps", "lane", "s_m", "d_m", "x_m", "y_m", "qz", "qw") + (
    "length_m",
    "width_m",
    "height_m",
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
    """A ``/scene`` message as a :class:`SceneFrame`; CorruptLogError if it is not a scene.

    A message in the writer's own layout is read with one regular-expression pass and its
    numbers converted a column at a time; any other spelling of the schema goes through
    ``json.loads``. Both give the same objects, checked the same way.
    """
    try:
        columns = _layout_columns(data)
        if columns is None:
            columns = _json_columns(data)
        qz, qw = columns.pop("qz"), columns.pop("qw")
        yaw = np.remainder(2.0 * np.arctan2(qz, qw) + math.pi, 2 * math.pi) - math.pi
        objects = SceneObjects(yaw_rad=yaw, **columns)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
        raise _bad_scene(t, f"{type(e).__name__}: {e}") from e
    except ConfigError as e:
        raise _bad_scene(t, str(e).rstrip(".")) from e
    return SceneFrame(t, objects)


def _layout_columns(data: bytes) -> dict[str, np.ndarray] | None:
    """The columns of a message written in :data:`_ENTITY`'s layout; None for any other."""
    head = _HEAD.match(data)
    if head is None or not data.endswith(b"]}"):
        return None
    body = data[head.end() : -2]
    found = list(_ENTITY_RE.finditer(body))
    if b",".join(m[0] for m in found) != body:  # every byte accounted for: nothing skipped
        return None
    rows = [m.groups() for m in found]
    # every number of the message in one C parse (the groups are checked number spellings)
    numbers = b",".join(itertools.chain.from_iterable((r[0], *r[2:]) for r in rows))
    cells = np.array(numbers.split(b","), dtype=np.float64) if rows else np.zeros(0)
    cells = cells.reshape(len(rows), len(_GROUPS) - 1)
    out = {name: cells[:, i] for i, name in enumerate(n for n in _GROUPS if n != "kind")}
    out["id"], out["lane"] = out["id"].astype(np.int64), out["lane"].astype(np.int64)
    out["kind"] = np.array([r[1] for r in rows], dtype=bytes).astype(str).reshape(len(rows))
    return out


def _json_columns(data: bytes) -> dict[str, np.ndarray]:
    """The columns of any foxglove.SceneUpdate of one cube per entity, through ``json.loads``."""
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

    return {
        "id": np.fromiter((int(e["id"]) for e in entities), np.int64, n),
        "kind": np.array([m["kind"] for m in meta], dtype=str).reshape(n),
        "x_m": floats(pos, "x"),
        "y_m": floats(pos, "y"),
        "qz": floats(rot, "z"),
        "qw": floats(rot, "w"),
        "speed_mps": floats(meta, "speed_mps"),
        "length_m": floats(size, "x"),
        "width_m": floats(size, "y"),
        "height_m": floats(size, "z"),
        "lane": np.fromiter((int(m["lane"]) for m in meta), np.int64, n),
        "s_m": floats(meta, "s_m"),
        "d_m": floats(meta, "d_m"),
    }


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
    "CUBE_TOLERANCE_M",
    "YAW_TOLERANCE_RAD",
    "KIND_RGBA",
    "METADATA_KEYS",
    "SceneFrame",
    "SceneLog",
    "calibration_message",
    "decode_scene",
    "scene_message",
]
