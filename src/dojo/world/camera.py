"""Camera rig and a batched renderer: road, lane markings, sky and vehicle boxes, many worlds at once.

Camera model. Every camera is an ideal pinhole with square pixels, mounted *level* (no pitch, no
roll) at ``(x_m, y_m, z_m)`` in the ego frame (x forward, y left, z up, origin at the ego's centre
on the ground) and turned by ``yaw_deg`` about z. The focal length is
``f = (width_px / 2) / tan(hfov / 2)`` [px], the same for rows and columns. Because a level camera
cannot tilt down to see more road, the principal point is shifted instead: the horizon sits at
``horizon_row * height_px`` from the top edge, so ``horizon_row = 0.4`` shows 40 % sky and 60 %
ground. Pixel ``(row v, column u)`` looks along

    forward = 1,  right = (u + 0.5 - width/2) / f,  up = (horizon_row*height - (v + 0.5)) / f.

Why level cameras: vertical edges stay vertical in the image, so each image column is one
horizontal ray in the world and each row one elevation slope. Then

* every ground pixel hits the road at an ego-frame point that never changes (precomputed per rig);
  only the ego pose moves it, and the road is shaded from that point's Frenet coordinates;
* every vehicle box, an upright prism, covers in each column one contiguous run of rows that
  follows in closed form from the 2D entry/exit distances of the column's ray through the box's
  footprint (a slab test). Boxes that do not touch each other are ordered exactly per column by
  their entry distance, so a first-hit rule is an exact depth buffer.

The renderer first draws a *material* image (sky, haze, grass, asphalt, marking, and a face of a
vehicle of each kind) and maps it through a grey or RGB palette, so both modes show the same scene.
Ground beyond ``max_range_m`` is drawn as haze and vehicles beyond it are not drawn.

All work is numpy over whole batches: no Python loop runs over worlds, pixels or vehicles. Worlds
are split into chunks rendered by a thread pool (numpy releases the GIL inside its loops). Each
world's image depends only on that world, so a batch renders the same bytes whatever its size,
its chunking or the number of threads.
"""

from __future__ import annotations

import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from dojo.errors import DojoConfigError
from dojo.validate import whole
from dojo.world.road import Roads, ring_mod
from dojo.world.vehicles import Kind, Vehicles

MAX_HFOV_DEG = 170.0
MAX_VEHICLES_DRAWN = 64
CHUNK_WORLDS = 16  # worlds per thread task: keeps the per-chunk arrays in cache

# Lane markings [m]: painted width, and dashes of DASH_M every DASH_PERIOD_M along s.
MARK_WIDTH_M = 0.15
DASH_M = 3.0
DASH_PERIOD_M = 9.0
GLASS_FROM, GLASS_TO = 0.6, 0.92  # car windows, as fractions of the body height

# Material codes of the intermediate image; vehicle faces follow as VEHICLE0 + 3*kind + face.
SKY, HAZE, GRASS, ASPHALT, MARKING, GLASS = 0, 1, 2, 3, 4, 5
VEHICLE0 = 6
FACE_TOP, FACE_SIDE, FACE_END = 0, 1, 2  # top, long side, front/back end
N_KINDS = len(Kind)

_SCENE_GREY = [205, 170, 135, 95, 245, 22]  # sky, haze, grass, asphalt, marking, glass
_SCENE_RGB = [
    (150, 190, 235),
    (185, 195, 205),
    (85, 135, 65),
    (90, 90, 96),
    (240, 240, 232),
    (30, 40, 55),
]
# Per kind (CAR, TRUCK, BARRIER, DEBRIS): grey level and colour of the top face; sides are darker.
_KIND_GREY = [75, 215, 255, 35]
_KIND_RGB = [(60, 90, 200), (215, 215, 200), (245, 125, 20), (95, 65, 40)]
_FACE_SHADE = [1.0, 0.82, 0.66]  # top, side, end: lit from above, so boxes read as 3D


def palette(rgb: bool) -> np.ndarray:
    """(n_materials,) grey or (n_materials, 3) RGB lookup table, uint8."""
    if rgb:
        scene = np.array(_SCENE_RGB, dtype=np.float64)
        kinds = np.array(_KIND_RGB, dtype=np.float64)
    else:
        scene = np.array(_SCENE_GREY, dtype=np.float64)
        kinds = np.array(_KIND_GREY, dtype=np.float64)
    shade = np.array(_FACE_SHADE).reshape((1, 3) + (1,) * (kinds.ndim - 1))
    faces = (kinds[:, None] * shade).reshape((-1,) + kinds.shape[1:])  # kind-major, then face
    return np.round(np.concatenate([scene, faces])).astype(np.uint8)


@dataclass(frozen=True)
class CameraSpec:
    """One level pinhole camera (see the module docstring for the model).

    ``x_m, y_m, z_m``: mount point in the ego frame [m] (x forward, y left, z up above the ground).
    ``yaw_deg``: 0 forward, 90 left, 180 rear, -90 right. ``hfov_deg``: horizontal field of view.
    ``horizon_row``: where the horizon sits, as a fraction of the image height from the top (the
    principal point is shifted, not the camera pitched). ``max_range_m``: farthest ground and
    vehicles drawn; beyond it the ground is haze.
    """

    name: str
    x_m: float = 0.0
    y_m: float = 0.0
    z_m: float = 1.4
    yaw_deg: float = 0.0
    hfov_deg: float = 90.0
    width_px: int = 96
    height_px: int = 48
    horizon_row: float = 0.4
    max_range_m: float = 120.0

    def __post_init__(self) -> None:
        who = f"camera {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise DojoConfigError(f"Camera name {self.name!r} must be a non-empty string.")
        for field in ("width_px", "height_px"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
                raise DojoConfigError(f"{who}: {field}={value!r} must be a positive whole number.")
        if not 0.0 < self.hfov_deg < MAX_HFOV_DEG:
            raise DojoConfigError(
                f"{who}: hfov_deg={self.hfov_deg!r} must lie in (0, {MAX_HFOV_DEG:g}) degrees."
            )
        if not self.z_m > 0.0:
            raise DojoConfigError(
                f"{who}: z_m={self.z_m!r} puts the camera on or under the road; it must be > 0 m."
            )
        if not 0.0 <= self.horizon_row < 1.0 or not self._sees_ground():
            raise DojoConfigError(
                f"{who}: horizon_row={self.horizon_row!r} puts the horizon at or below the bottom "
                "row, so the camera looks at nothing; it must lie in [0, 1) with a row below it."
            )
        if not self.max_range_m > 0.0:
            raise DojoConfigError(f"{who}: max_range_m={self.max_range_m!r} must be > 0 m.")
        nearest = self.nearest_ground_m
        if nearest > self.max_range_m:
            raise DojoConfigError(
                f"{who} sees nothing: its nearest ground is {nearest:.1f} m away, beyond its "
                f"max_range_m={self.max_range_m!r} (every pixel would be sky or haze); raise "
                "max_range_m, widen hfov_deg or raise horizon_row."
            )
        for field in ("x_m", "y_m", "yaw_deg"):
            if not math.isfinite(getattr(self, field)):
                raise DojoConfigError(f"{who}: {field}={getattr(self, field)!r} must be finite.")

    def _sees_ground(self) -> bool:
        # the bottom row's centre must lie strictly below the horizon
        return self.height_px - 0.5 > self.horizon_row * self.height_px

    @property
    def nearest_ground_m(self) -> float:
        """Distance [m] of the nearest ground the camera sees (its bottom row's centre columns).

        Nothing nearer shows below the horizon, so a max_range_m short of it draws no ground, and
        no object either but one inside the car itself.
        """
        rows_below = self.height_px - 0.5 - self.horizon_row * self.height_px
        return self.z_m * self.focal_px / rows_below

    @property
    def focal_px(self) -> float:
        """Focal length [px], equal for rows and columns."""
        return 0.5 * self.width_px / math.tan(math.radians(0.5 * self.hfov_deg))


@dataclass(frozen=True)
class CameraRig:
    """The cameras of a car. All share one resolution so a batch is one array.

    ``max_vehicles``: the nearest this many non-ego objects of each world are drawn (a depth
    buffer over that many boxes; farther ones are skipped).
    """

    cameras: tuple[CameraSpec, ...]
    rgb: bool = False
    max_vehicles: int = 12

    def __post_init__(self) -> None:
        object.__setattr__(self, "cameras", tuple(self.cameras))  # a list would not hash
        if not self.cameras:
            raise DojoConfigError("A camera rig needs at least one camera; got none.")
        names = [c.name for c in self.cameras]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise DojoConfigError(f"Camera names must be unique; repeated: {', '.join(dupes)}.")
        sizes = {(c.height_px, c.width_px) for c in self.cameras}
        if len(sizes) > 1:
            raise DojoConfigError(
                f"All cameras of a rig need one resolution (height, width); got {sorted(sizes)}."
            )
        whole("max_vehicles", self.max_vehicles, 1, MAX_VEHICLES_DRAWN)

    @classmethod
    def named(cls, name: str, rgb: bool = False, width: int = 96, height: int = 48) -> CameraRig:
        """The rig called ``name`` in :data:`dojo.world.rigs.RIGS` (``quad``, ``triple``, ...)."""
        from dojo.world import rigs  # rigs builds on this module

        return rigs.build(name, rgb=rgb, width=width, height=height)

    @classmethod
    def default(cls, rgb: bool = False, width: int = 96, height: int = 48) -> CameraRig:
        """The default rig, :data:`dojo.world.rigs.DEFAULT_RIG` (see that module for why)."""
        from dojo.world import rigs

        return rigs.build(rigs.DEFAULT_RIG, rgb=rgb, width=width, height=height)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.cameras]

    @property
    def image_shape(self) -> tuple[int, ...]:
        """Shape of one world's images: (n_cams, H, W_px) or (n_cams, H, W_px, 3)."""
        c = self.cameras[0]
        shape: tuple[int, ...] = (len(self.cameras), c.height_px, c.width_px)
        return shape + (3,) if self.rgb else shape


@dataclass(frozen=True)
class _Tables:
    """Per-rig constants; C cameras, H rows, U columns, G ground pixels within range."""

    height: int
    width: int
    focal: np.ndarray  # (C,) [px]
    centre_row: np.ndarray  # (C,) horizon position [px from the top edge]
    cam_x: np.ndarray  # (C,) mount point, ego frame [m]
    cam_y: np.ndarray  # (C,)
    cam_z: np.ndarray  # (C,)
    ray_x: np.ndarray  # (C, U) horizontal ray of each column, ego frame, unit forward component
    ray_y: np.ndarray  # (C, U)
    ray_len: np.ndarray  # (C, U) horizontal metres per unit of ray parameter t
    max_range: np.ndarray  # (C,) [m]
    background: np.ndarray  # (C, H, U) uint8 material: sky above the horizon, haze beyond range
    ground_idx: np.ndarray  # (G,) flat index into (C, H, U) of ground pixels within range
    ground_x: np.ndarray  # (G,) where each ground pixel hits the ground, ego frame [m]
    ground_y: np.ndarray  # (G,)
    mark_half: np.ndarray  # (G,) half width [m] a marking is drawn with (at least one pixel wide)
    palette: np.ndarray  # (n_materials,) or (n_materials, 3) uint8


@lru_cache(maxsize=16)
def _tables(rig: CameraRig) -> _Tables:
    cams = rig.cameras
    h, u = cams[0].height_px, cams[0].width_px
    focal = np.array([c.focal_px for c in cams])
    centre_row = np.array([c.horizon_row * h for c in cams])
    yaw = np.radians([c.yaw_deg for c in cams])[:, None]
    right = (np.arange(u) + 0.5 - 0.5 * u)[None, :] / focal[:, None]  # (C, U) tan(azimuth), right +
    ray_x = np.cos(yaw) + np.sin(yaw) * right  # rotate (1, -right) by the camera yaw
    ray_y = np.sin(yaw) - np.cos(yaw) * right
    ray_len = np.sqrt(1.0 + right**2)
    up = (centre_row[:, None] - (np.arange(h) + 0.5)[None, :]) / focal[:, None]  # (C, H) tan(elev.)
    cam_z = np.array([c.z_m for c in cams])
    max_range = np.array([c.max_range_m for c in cams])
    with np.errstate(divide="ignore"):
        t_ground = np.where(up < 0.0, -cam_z[:, None] / up, np.inf)  # (C, H) ray parameter
    dist = t_ground[:, :, None] * ray_len[:, None, :]  # (C, H, U) horizontal distance [m]
    in_range = dist <= max_range[:, None, None]
    background = np.where(up[:, :, None] >= 0.0, SKY, HAZE).astype(np.uint8)
    background = np.broadcast_to(background, (len(cams), h, u)).copy()
    ground_idx = np.flatnonzero(in_range)
    ci, vi, ui = np.unravel_index(ground_idx, in_range.shape)
    cam_x = np.array([c.x_m for c in cams])
    cam_y = np.array([c.y_m for c in cams])
    t = t_ground[ci, vi]
    # a pixel spans about dist/f metres across: draw markings at least that wide so they never vanish
    mark_half = np.maximum(0.5 * MARK_WIDTH_M, 0.5 * dist.reshape(-1)[ground_idx] / focal[ci])
    return _Tables(
        height=h,
        width=u,
        focal=focal,
        centre_row=centre_row,
        cam_x=cam_x,
        cam_y=cam_y,
        cam_z=cam_z,
        ray_x=ray_x,
        ray_y=ray_y,
        ray_len=ray_len,
        max_range=max_range,
        background=background,
        ground_idx=ground_idx,
        ground_x=(cam_x[ci] + t * ray_x[ci, ui]).astype(np.float32),
        ground_y=(cam_y[ci] + t * ray_y[ci, ui]).astype(np.float32),
        mark_half=mark_half.astype(np.float32),
        palette=palette(rig.rgb),
    )


def render(
    roads: Roads,
    vehicles: Vehicles,
    rig: CameraRig,
    worlds: np.ndarray | None = None,
    threads: int | None = None,
) -> np.ndarray:
    """Camera images of every world (or of ``worlds``), seen from its ego (vehicle slot 0).

    Returns uint8 ``(W, n_cams, H, W_px)`` grey, or ``(W, n_cams, H, W_px, 3)`` when ``rig.rgb``;
    cameras in ``rig.cameras`` order, row 0 at the top. ``threads`` defaults to ``os.cpu_count()``.
    """
    idx = world_indices(roads, vehicles, worlds)
    n_threads = _thread_count(threads)
    tab = _tables(rig)
    out = np.empty((len(idx),) + rig.image_shape, dtype=np.uint8)
    chunks = [
        np.arange(a, min(a + CHUNK_WORLDS, len(idx))) for a in range(0, len(idx), CHUNK_WORLDS)
    ]

    def work(rows: np.ndarray) -> None:
        mat = _materials(roads, vehicles, idx[rows], tab, rig.max_vehicles)
        # np.take: the same lookup as palette[mat], about twice as fast on uint8 codes
        out[rows[0] : rows[-1] + 1] = np.take(tab.palette, mat, axis=0)

    if n_threads == 1 or len(chunks) == 1:
        for rows in chunks:
            work(rows)
    else:
        with ThreadPoolExecutor(max_workers=min(n_threads, len(chunks))) as pool:
            list(pool.map(work, chunks))  # list() re-raises any worker error
    return out


def world_indices(roads: Roads, vehicles: Vehicles, worlds: np.ndarray | None) -> np.ndarray:
    """Validated indices of the worlds to sense: all of them when ``worlds`` is None."""
    n = len(roads.lanes)
    if vehicles.shape[0] != n:
        raise DojoConfigError(f"vehicles cover {vehicles.shape[0]} worlds but roads cover {n}.")
    if worlds is None:
        return np.arange(n)
    idx = np.asarray(worlds)
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
        raise DojoConfigError(f"worlds must be a 1-D array of world indices; got {worlds!r}.")
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise DojoConfigError(f"worlds={idx.tolist()!r} has an index outside [0, {n}).")
    return idx


def _thread_count(threads: int | None) -> int:
    if threads is None:
        return os.cpu_count() or 1
    return whole("threads", threads, 1)


def materials(
    roads: Roads, vehicles: Vehicles, rig: CameraRig, worlds: np.ndarray | None = None
) -> np.ndarray:
    """The material image ``render`` maps through the palette: uint8 ``(W, n_cams, H, W_px)``.

    Codes: SKY, HAZE, GRASS, ASPHALT, MARKING, GLASS, then VEHICLE0 + 3 * kind + face; a pixel
    shows an object exactly when its code is GLASS or >= VEHICLE0 (counting an object's pixels).
    """
    idx = world_indices(roads, vehicles, worlds)
    return _materials(roads, vehicles, idx, _tables(rig), rig.max_vehicles)


def _materials(roads: Roads, veh: Vehicles, w: np.ndarray, tab: _Tables, k_max: int) -> np.ndarray:
    """(n, C, H, U) uint8 material image of worlds ``w``."""
    pose = ego_pose(roads, veh, w)
    n = len(w)
    mat = np.broadcast_to(tab.background, (n,) + tab.background.shape).copy()
    flat = mat.reshape(n, -1)
    flat[:, tab.ground_idx] = _ground(roads, w, *pose, tab)
    _draw_boxes(flat.reshape(-1), roads, veh, w, pose, tab, k_max)
    return mat


def ego_pose(
    roads: Roads, veh: Vehicles, w: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ego (slot 0) position [m] and heading [rad] in the world frame of worlds ``w``, each (n,)."""
    x, y, heading = roads.to_xy(veh.s[w, 0], veh.d[w, 0], w)
    return x, y, heading + veh.psi[w, 0]


def in_ego_frame(
    roads: Roads, veh: Vehicles, w: np.ndarray, pose: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre (x forward, y left) [m] and heading [rad] of every slot in its ego's frame, each (n, V)."""
    x0, y0, yaw0 = (a[:, None] for a in pose)
    xv, yv, road_heading = roads.to_xy(veh.s[w], veh.d[w], w[:, None])
    c0, s0 = np.cos(yaw0), np.sin(yaw0)
    dx, dy = xv - x0, yv - y0
    return c0 * dx + s0 * dy, -s0 * dx + c0 * dy, road_heading + veh.psi[w] - yaw0


def _ground(
    roads: Roads, w: np.ndarray, x0: np.ndarray, y0: np.ndarray, yaw0: np.ndarray, tab: _Tables
) -> np.ndarray:
    """(n, G) material of the ground pixels: grass, asphalt or marking."""
    # float32 from here on: twice as fast, and a road 10 km long still resolves 1 mm
    roads = _float32(roads)
    x0, y0, yaw0 = (a.astype(np.float32)[:, None] for a in (x0, y0, yaw0))
    c, s = np.cos(yaw0), np.sin(yaw0)
    xw = x0 + c * tab.ground_x - s * tab.ground_y  # (n, G) world frame [m]
    yw = y0 + s * tab.ground_x + c * tab.ground_y
    wc = w[:, None]
    fs, fd = roads.to_frenet(xw, yw, wc)
    lane_w = roads.lane_width[wc]
    q = fd / lane_w - 0.5
    # nearest boundary lies between lanes `right` and right+1; kept float32 (whole numbers), and
    # q - right is exact in float32 as q and right are within a factor of two (or right is 0)
    right = np.round(q)
    open_r, open_l = roads.lanes_open(right, fs, wc)
    on_line = np.abs(q - right).astype(np.float64) * lane_w <= tab.mark_half
    # solid where drivable meets not drivable (road edges), dashed between two open lanes
    dash = ring_mod(fs, np.array(DASH_PERIOD_M, dtype=np.float32)) < DASH_M
    painted = on_line & ((open_r != open_l) | (open_r & dash))
    drivable = np.where(q > right, open_l, open_r)  # the lane on the pixel's side of the line
    # uint8 codes: with Python ints np.where would build two int64 images and then convert them
    code = np.uint8
    return np.where(painted, code(MARKING), np.where(drivable, code(ASPHALT), code(GRASS)))


def _float32(roads: Roads) -> Roads:
    """The same roads with float32 geometry, so that Frenet maths over pixels stays float32."""
    floats = {f.name: getattr(roads, f.name) for f in fields(roads)}
    floats = {k: v.astype(np.float32) for k, v in floats.items() if v.dtype.kind == "f"}
    return replace(roads, **floats)


def _nearest_objects(
    veh: Vehicles, w: np.ndarray, ex: np.ndarray, ey: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Slots (n, k) of the k nearest active non-ego objects and whether each pick is a real one."""
    dist2 = np.where(veh.active[w], ex**2 + ey**2, np.inf)
    dist2[:, 0] = np.inf  # the ego does not see itself
    order = np.argsort(dist2, axis=1, kind="stable")[:, :k]
    return order, np.isfinite(np.take_along_axis(dist2, order, axis=1))


def _draw_boxes(
    flat: np.ndarray,
    roads: Roads,
    veh: Vehicles,
    w: np.ndarray,
    pose: tuple[np.ndarray, np.ndarray, np.ndarray],
    tab: _Tables,
    k_max: int,
) -> None:
    """Paint the nearest vehicle boxes into ``flat``, the (n*C*H*U,) material image, nearest wins."""
    k = min(k_max, veh.shape[1] - 1)
    if k <= 0:
        return
    ex_all, ey_all, eyaw_all = in_ego_frame(roads, veh, w, pose)  # (n, V)
    slot, real = _nearest_objects(veh, w, ex_all, ey_all, k)

    def pick(a: np.ndarray) -> np.ndarray:
        return np.take_along_axis(a, slot, axis=1)  # (n, k)

    ex, ey, eyaw = pick(ex_all), pick(ey_all), pick(eyaw_all)
    half_l, half_w = 0.5 * pick(veh.length[w]), 0.5 * pick(veh.width[w])
    t_near, t_far, end_face = _slab(ex, ey, eyaw, half_l, half_w, tab)  # (n, C, U, k)
    in_range = t_near * tab.ray_len[None, :, :, None] <= tab.max_range[None, :, None, None]
    hit = real[:, None, None, :] & (t_near > 1e-3) & (t_near <= t_far) & in_range
    wi, ci, ui, ki = np.nonzero(hit)
    if wi.size == 0:
        return
    tn, tf = t_near[wi, ci, ui, ki], t_far[wi, ci, ui, ki]
    height = pick(veh.height[w])[wi, ki]
    first, split, last = _row_span(tn, tf, height, ci, tab)
    # nearest first, so that the first run that covers a pixel is the one it shows
    keep = np.flatnonzero(first <= last)
    keep = keep[np.argsort(tn[keep], kind="stable")]
    kind = np.clip(pick(veh.kind[w].astype(np.int64))[wi, ki], 0, N_KINDS - 1)
    runs = _Runs(
        world=wi[keep],
        cam=ci[keep],
        col=ui[keep],
        first=first[keep],
        split=split[keep],
        last=last[keep],
        t_near=tn[keep].astype(np.float64),
        height=height[keep],
        kind=kind[keep],
        side_face=np.where(end_face[wi, ci, ui, ki], FACE_END, FACE_SIDE)[keep],
    )
    _paint_runs(flat, runs, tab)


def _slab(
    ex: np.ndarray,
    ey: np.ndarray,
    eyaw: np.ndarray,
    half_l: np.ndarray,
    half_w: np.ndarray,
    tab: _Tables,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Entry and exit ray parameter of every column ray through every box footprint, (n, C, U, k).

    Also whether the ray enters through a front/back end (else through a long side).
    """
    f32 = np.float32
    cy, sy = np.cos(eyaw).astype(f32)[:, None, None, :], np.sin(eyaw).astype(f32)[:, None, None, :]
    # camera position relative to each box centre, in the box frame: (n, C, 1, k)
    rx = (tab.cam_x[None, :, None] - ex[:, None, :]).astype(f32)[:, :, None, :]
    ry = (tab.cam_y[None, :, None] - ey[:, None, :]).astype(f32)[:, :, None, :]
    ox, oy = cy * rx + sy * ry, -sy * rx + cy * ry
    rayx = tab.ray_x.astype(f32)[None, :, :, None]
    rayy = tab.ray_y.astype(f32)[None, :, :, None]
    dx, dy = cy * rayx + sy * rayy, -sy * rayx + cy * rayy  # (n, C, U, k)
    dx += np.copysign(f32(1e-12), dx)  # never divide by an exact zero
    dy += np.copysign(f32(1e-12), dy)
    hl = half_l.astype(f32)[:, None, None, :]
    hw = half_w.astype(f32)[:, None, None, :]
    ax, bx = (-hl - ox) / dx, (hl - ox) / dx
    ay, by = (-hw - oy) / dy, (hw - oy) / dy
    x_in, y_in = np.minimum(ax, bx), np.minimum(ay, by)
    t_near = np.maximum(x_in, y_in)
    t_far = np.minimum(np.maximum(ax, bx), np.maximum(ay, by))
    return t_near, t_far, x_in > y_in


def _row_span(
    tn: np.ndarray, tf: np.ndarray, height: np.ndarray, ci: np.ndarray, tab: _Tables
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows a box covers in one column: first row, first side-face row, last row (inclusive).

    A row of elevation slope b meets the side face at entry when 0 <= z_cam + b*t_near <= height;
    above that, a camera higher than the box sees the top face until z_cam + b*t_far = height.
    Below it the ray has reached the ground before the box.
    """
    f, row0, z = tab.focal[ci], tab.centre_row[ci], tab.cam_z[ci]
    tn, tf = tn.astype(np.float64), tf.astype(np.float64)
    side_first = np.ceil(row0 - f * (height - z) / tn - 0.5)
    top_first = np.ceil(row0 - f * (height - z) / tf - 0.5)  # only above side_first when z > height
    last = np.floor(row0 + f * z / tn - 0.5)
    first = np.clip(np.minimum(side_first, top_first), 0, tab.height)
    last = np.clip(last, -1, tab.height - 1)
    return (
        first.astype(np.int64),
        np.clip(side_first, 0, tab.height).astype(np.int64),
        last.astype(np.int64),
    )


class _Runs(NamedTuple):
    """Runs of rows one box covers in one image column, nearest first; each array (m,)."""

    world: np.ndarray  # chunk-local world index
    cam: np.ndarray
    col: np.ndarray
    first: np.ndarray  # first row (top face, if any, from here to split - 1)
    split: np.ndarray  # first side-face row
    last: np.ndarray  # last row, inclusive
    t_near: np.ndarray  # ray parameter where the column's ray enters the box
    height: np.ndarray  # [m]
    kind: np.ndarray  # Kind code
    side_face: np.ndarray  # FACE_SIDE or FACE_END: the face the ray enters through


def _paint_runs(flat: np.ndarray, runs: _Runs, tab: _Tables) -> None:
    """Write the runs' materials into ``flat`` (n*C*H*U,); where runs overlap the earlier wins."""
    length = runs.last - runs.first + 1
    run = np.repeat(np.arange(len(length)), length)  # (P,) run of each painted pixel
    start = np.cumsum(length) - length
    row = runs.first[run] + (np.arange(run.size) - start[run])
    cam = runs.cam[run]
    pixel = ((runs.world[run] * len(tab.focal) + cam) * tab.height + row) * tab.width + runs.col[
        run
    ]
    face = np.where(row < runs.split[run], FACE_TOP, runs.side_face[run])
    material = (VEHICLE0 + 3 * runs.kind[run] + face).astype(np.uint8)
    # cars get a band of glass around their sides, so they read as cars and not as crates
    up = (tab.centre_row[cam] - (row + 0.5)) / tab.focal[cam]
    z_rel = (tab.cam_z[cam] + up * runs.t_near[run]) / runs.height[run]  # height on the face, 0..1
    glass = (
        (runs.kind[run] == Kind.CAR)
        & (face != FACE_TOP)
        & (z_rel >= GLASS_FROM)
        & (z_rel <= GLASS_TO)
    )
    material[glass] = GLASS
    _, first_hit = np.unique(pixel, return_index=True)  # stable: the nearest run per pixel
    flat[pixel[first_hit]] = material[first_hit]


def measure_frames_per_s(
    roads: Roads,
    vehicles: Vehicles,
    rig: CameraRig,
    seconds: float = 3.0,
    threads: int | None = None,
) -> float:
    """Camera frames rendered per second (one frame = one camera image) over about ``seconds``."""
    if not seconds > 0.0:
        raise DojoConfigError(f"seconds={seconds!r} must be > 0.")
    render(roads, vehicles, rig, threads=threads)  # warm the rig tables and the thread pool
    frames, start = 0, time.perf_counter()
    while True:
        render(roads, vehicles, rig, threads=threads)
        frames += vehicles.shape[0] * len(rig.cameras)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return frames / elapsed
