"""Ground-truth bird's-eye occupancy grid around each ego, many worlds at once.

The grid is ego-centred and ego-aligned (it turns with the ego's heading). With the default
:class:`OccupancySpec` it has 0.5 m cells and reaches 40 m ahead, 20 m behind and 20 m to each
side: 120 rows x 80 columns. Layout of the returned ``(W, rows, cols)`` array, chosen so that it
reads like a map with the ego driving up the page:

* row 0 is the farthest ahead; row ``r`` has its centre at ``x = forward_m - (r + 0.5) * cell_m``
  metres ahead of the ego's centre (negative: behind);
* column 0 is the farthest left; column ``c`` has its centre at ``y = side_m - (c + 0.5) * cell_m``
  metres to the left of the ego's centre (negative: right).

A cell takes the class of what lies under its centre (exact point-in-oriented-box test), by
priority: EGO over VEHICLE and OBSTACLE over NOT_DRIVABLE over FREE.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dojo.errors import DojoConfigError
from dojo.world.camera import ego_pose, in_ego_frame, world_indices
from dojo.world.road import Roads
from dojo.world.vehicles import Kind, Vehicles

FREE = 0  # drivable road, nothing on it
VEHICLE = 1  # a car or truck other than the ego, moving or stalled
OBSTACLE = 2  # a static object: a lane-end barrier or debris
NOT_DRIVABLE = (
    3  # off the road, or a lane that is closed there (ramp outside its span, dropped lane)
)
EGO = 4  # the ego's own body
CLASS_NAMES = ("free", "vehicle", "obstacle", "not_drivable", "ego")

MAX_CELLS = 512 * 512  # per world; more is almost surely a unit mistake (cm for m)
_STATIC_KINDS = (int(Kind.BARRIER), int(Kind.DEBRIS))


@dataclass(frozen=True)
class OccupancySpec:
    """Grid geometry [m]: cell size, and reach ahead of, behind and to each side of the ego."""

    cell_m: float = 0.5
    forward_m: float = 40.0
    backward_m: float = 20.0
    side_m: float = 20.0

    def __post_init__(self) -> None:
        if not self.cell_m > 0.0:
            raise DojoConfigError(f"cell_m={self.cell_m!r} must be > 0 m.")
        for field in ("forward_m", "backward_m", "side_m"):
            value = getattr(self, field)
            if not 0.0 < value < 1e4:
                raise DojoConfigError(f"{field}={value!r} must be > 0 m (and under 10 km).")
            cells = value / self.cell_m
            if abs(cells - round(cells)) > 1e-6:
                raise DojoConfigError(
                    f"{field}={value!r} is not a whole number of cell_m={self.cell_m!r} cells."
                )
        if self.rows * self.cols > MAX_CELLS:
            raise DojoConfigError(
                f"cell_m={self.cell_m!r} gives {self.rows} x {self.cols} cells per world, more "
                f"than {MAX_CELLS}; use larger cells or a smaller reach."
            )

    @property
    def rows(self) -> int:
        """Cells along x (forward), row 0 farthest ahead."""
        return round((self.forward_m + self.backward_m) / self.cell_m)

    @property
    def cols(self) -> int:
        """Cells along y, column 0 farthest left."""
        return round(2.0 * self.side_m / self.cell_m)

    @property
    def ego_row_col(self) -> tuple[float, float]:
        """Fractional (row, column) of the ego's centre in the grid (cell edges at integers)."""
        return self.forward_m / self.cell_m, self.side_m / self.cell_m

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        """Cell-centre coordinates in the ego frame [m]: x (rows,), y (cols,)."""
        x = self.forward_m - (np.arange(self.rows) + 0.5) * self.cell_m
        y = self.side_m - (np.arange(self.cols) + 0.5) * self.cell_m
        return x, y


def occupancy(
    roads: Roads,
    vehicles: Vehicles,
    spec: OccupancySpec | None = None,
    worlds: np.ndarray | None = None,
) -> np.ndarray:
    """uint8 ``(W, rows, cols)`` class grid of every world (or of ``worlds``); see the module doc."""
    return occupancy_flow(roads, vehicles, spec, worlds, flow=False)[0]


def occupancy_flow(
    roads: Roads,
    vehicles: Vehicles,
    spec: OccupancySpec | None = None,
    worlds: np.ndarray | None = None,
    flow: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The class grid and, with ``flow``, each cell's velocity relative to the ego.

    Flow: float32 ``(W, rows, cols, 2)`` [m/s], the velocity of what covers the cell minus the
    ego's, in the ego frame (x forward, y left); 0 on the road, off it and on the ego. What a
    planner needs from a cell is how fast it closes in, which is this difference.
    """
    spec = spec or OccupancySpec()
    w = world_indices(roads, vehicles, worlds)
    pose = ego_pose(roads, vehicles, w)
    grid = _road_classes(roads, w, pose, spec)
    ex, ey, eyaw = in_ego_frame(roads, vehicles, w, pose)  # (n, V)
    others = vehicles.active[w].copy()
    others[:, 0] = False
    static = np.isin(vehicles.kind[w], _STATIC_KINDS)
    ego = np.zeros_like(others)
    ego[:, 0] = True
    cells = rel = None
    if flow:
        cells = np.zeros((len(w), spec.rows, spec.cols, 2), dtype=np.float32)
        v = vehicles.v[w]
        vx, vy = v * np.cos(eyaw), v * np.sin(eyaw)  # (n, V) in the ego frame
        rel = np.stack([vx - vx[:, :1], vy - vy[:, :1]], axis=-1)  # (n, V, 2)
        rel[:, 0] = 0.0
    for mask, code in ((others & static, OBSTACLE), (others & ~static, VEHICLE), (ego, EGO)):
        wi, r, c, vi = _box_cells((ex, ey, eyaw), vehicles, w, mask, spec)
        grid[wi, r, c] = code  # later codes win
        if cells is not None and rel is not None:
            cells[wi, r, c] = rel[wi, vi]
    return grid, cells


def _road_classes(
    roads: Roads,
    w: np.ndarray,
    pose: tuple[np.ndarray, np.ndarray, np.ndarray],
    spec: OccupancySpec,
) -> np.ndarray:
    """(n, rows, cols) FREE where a cell centre is on an open lane, else NOT_DRIVABLE."""
    x0, y0, yaw0 = (a[:, None, None] for a in pose)
    gx, gy = spec.centres()
    gx, gy = gx[None, :, None], gy[None, None, :]
    c, s = np.cos(yaw0), np.sin(yaw0)
    xw = x0 + c * gx - s * gy  # (n, rows, cols) world frame [m]
    yw = y0 + s * gx + c * gy
    wc = w[:, None, None]
    fs, fd = roads.to_frenet(xw, yw, wc)
    return np.where(roads.on_road(fs, fd, wc), FREE, NOT_DRIVABLE).astype(np.uint8)


def _box_cells(
    boxes: tuple[np.ndarray, np.ndarray, np.ndarray],
    veh: Vehicles,
    w: np.ndarray,
    mask: np.ndarray,
    spec: OccupancySpec,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(world, row, col, slot) of every cell whose centre lies inside a masked box, each (m,).

    Only a square window of cells around each box centre is tested (large enough for the largest
    masked box), which keeps the work per vehicle small and independent of the grid size.
    """
    wi, vi = np.nonzero(mask)
    if wi.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, empty
    ex, ey, eyaw = (a[wi, vi] for a in boxes)
    half_l, half_w = 0.5 * veh.length[w][wi, vi], 0.5 * veh.width[w][wi, vi]
    reach = int(np.ceil(np.max(np.hypot(half_l, half_w)) / spec.cell_m)) + 1
    offset = np.arange(-reach, reach + 1)
    # nearest cell to each centre, then the window of cells around it: (m, 2R+1, 2R+1)
    r0 = np.floor((spec.forward_m - ex) / spec.cell_m).astype(np.int64)
    c0 = np.floor((spec.side_m - ey) / spec.cell_m).astype(np.int64)
    rows = r0[:, None, None] + offset[None, :, None]
    cols = c0[:, None, None] + offset[None, None, :]
    cx = spec.forward_m - (rows + 0.5) * spec.cell_m - ex[:, None, None]  # cell centre - box centre
    cy = spec.side_m - (cols + 0.5) * spec.cell_m - ey[:, None, None]
    cos, sin = np.cos(eyaw)[:, None, None], np.sin(eyaw)[:, None, None]
    along, across = cos * cx + sin * cy, -sin * cx + cos * cy
    inside = (np.abs(along) <= half_l[:, None, None]) & (np.abs(across) <= half_w[:, None, None])
    inside &= (rows >= 0) & (rows < spec.rows) & (cols >= 0) & (cols < spec.cols)
    m, r, c = np.nonzero(inside)
    return wi[m], rows[m, r, 0], cols[m, 0, c], vi[m]
