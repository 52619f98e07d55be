"""Occupancy grid: exact cell counts for known boxes, closed lanes, layout and validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dojo.errors import DojoConfigError
from dojo.world.occupancy import (
    EGO,
    FREE,
    NOT_DRIVABLE,
    OBSTACLE,
    VEHICLE,
    OccupancySpec,
    occupancy,
)
from dojo.world.road import RoadConfig, Roads
from dojo.world.vehicles import BODY, Kind, Vehicles
from tests.world.scenes import LANE_W, scene


def cells_in_axis_box(half: float, cell: float) -> int:
    """Cell centres within +-half of a cell edge on one axis (centres at odd multiples of cell/2)."""
    return 2 * int(math.floor(half / cell + 0.5))


def test_default_layout() -> None:
    spec = OccupancySpec()
    assert (spec.rows, spec.cols) == (120, 80)
    grid = occupancy(*scene())
    assert grid.shape == (1, 120, 80) and grid.dtype == np.uint8
    x, y = spec.centres()
    assert x[0] == pytest.approx(39.75) and x[-1] == pytest.approx(-19.75)
    assert y[0] == pytest.approx(19.75) and y[-1] == pytest.approx(-19.75)


def test_ego_cells_and_road_classes() -> None:
    spec = OccupancySpec()
    grid = occupancy(*scene(ego_d=LANE_W), spec)[0]
    length, width, _ = BODY[Kind.CAR]
    assert (grid == EGO).sum() == cells_in_axis_box(length / 2, 0.5) * cells_in_axis_box(
        width / 2, 0.5
    )
    assert grid[80, 40] == EGO and grid[79, 39] == EGO  # around the ego's centre (row 80, col 40)
    # road d in [-2, 10]: 6 m to the left and 6 m to the right of the ego (in lane 1)
    row = grid[0]
    assert (row[28:52] == FREE).all()  # columns of y in (-6, 6)
    assert (row[:28] == NOT_DRIVABLE).all() and (row[52:] == NOT_DRIVABLE).all()


def test_vehicle_at_known_offset() -> None:
    spec = OccupancySpec()
    # a car 10 m ahead, one lane (4 m) to the left: centre at row (40 - 10) / 0.5, col (20 - 4) / 0.5
    grid = occupancy(*scene([(Kind.CAR, 10.0, 2 * LANE_W, 0.0)]), spec)[0]
    length, width, _ = BODY[Kind.CAR]
    mask = grid == VEHICLE
    assert mask.sum() == cells_in_axis_box(length / 2, 0.5) * cells_in_axis_box(width / 2, 0.5)
    rows, cols = np.nonzero(mask)
    assert rows.mean() + 0.5 == pytest.approx(60.0) and cols.mean() + 0.5 == pytest.approx(32.0)


def test_rotated_truck_covers_its_area() -> None:
    grid = occupancy(*scene([(Kind.TRUCK, 12.0, 0.0, 0.6)]))[0]
    length, width, _ = BODY[Kind.TRUCK]
    count = (grid == VEHICLE).sum()
    area_cells = length * width / 0.25
    perimeter_cells = 2 * (length + width) / 0.5
    assert abs(count - area_cells) <= 0.5 * perimeter_cells


def test_obstacles_have_their_own_class_and_clip_at_the_edge() -> None:
    objects = [
        (Kind.DEBRIS, 5.0, 0.0, 0.0),
        (Kind.BARRIER, 15.0, 0.0, 0.0),
        (Kind.TRUCK, 42.0, LANE_W, 0.0),
    ]
    grid = occupancy(*scene(objects))[0]
    assert (grid == OBSTACLE).sum() > 0
    debris_cells = cells_in_axis_box(0.5, 0.5) * cells_in_axis_box(0.8, 0.5)
    barrier_cells = cells_in_axis_box(0.5, 0.5) * cells_in_axis_box(1.8, 0.5)
    assert (grid == OBSTACLE).sum() == debris_cells + barrier_cells
    # the truck spans 36 to 48 m ahead: only its part within 40 m is in the grid (rows 0..7)
    assert (grid == VEHICLE).sum() == 8 * cells_in_axis_box(2.5 / 2, 0.5)


def test_far_and_inactive_objects_leave_no_trace() -> None:
    roads, veh = scene([(Kind.CAR, 300.0, LANE_W, 0.0), (Kind.CAR, 5.0, LANE_W, 0.0)])
    veh.active[0, 2] = False
    assert np.array_equal(occupancy(roads, veh), occupancy(*scene()))


def test_dropped_lane_and_ramp_are_not_drivable_where_closed() -> None:
    config = RoadConfig(
        lanes=3,
        lane_width_m=LANE_W,
        drop_start_m=520.0,
        drop_length_m=100.0,
        ramp_start_m=400.0,
        ramp_length_m=110.0,
    )
    spec = OccupancySpec()
    grid = occupancy(*scene(ego_d=LANE_W, config=config), spec)[0]
    x, y = spec.centres()

    def cell(ahead: float, left: float) -> int:
        return int(grid[np.argmin(np.abs(x - ahead)), np.argmin(np.abs(y - left))])

    assert cell(10.0, -LANE_W) == FREE  # lane 0 at s = 510, before the drop
    assert cell(30.0, -LANE_W) == NOT_DRIVABLE  # lane 0 at s = 530, dropped
    assert cell(30.0, 0.0) == FREE  # lane 1 stays open
    assert cell(5.0, -2 * LANE_W) == FREE  # the ramp at s = 505, open
    assert cell(15.0, -2 * LANE_W) == NOT_DRIVABLE  # the ramp at s = 515, past its end
    assert cell(-10.0, -3 * LANE_W) == NOT_DRIVABLE  # off the road altogether


def test_turns_with_the_ego() -> None:
    """An ego turned 90 degrees left sees the road's forward direction on its right."""
    roads, veh = scene([(Kind.CAR, 10.0, LANE_W, 0.0)])
    veh.psi[0, 0] = 0.5 * math.pi
    rows, cols = np.nonzero(occupancy(roads, veh)[0] == VEHICLE)
    assert rows.mean() + 0.5 == pytest.approx(80.0)  # level with the ego
    assert cols.mean() + 0.5 == pytest.approx(40.0 + 10.0 / 0.5)  # 10 m to its right


def test_batch_matches_single_worlds() -> None:
    rng = np.random.default_rng(4)
    n = 9
    roads = Roads.stack(
        [RoadConfig(lanes=3, ramp_start_m=100.0, ramp_length_m=200.0) for _ in range(n)]
    )
    veh = Vehicles.empty(n, 12)
    veh.active[:] = True
    veh.s[:, 0] = rng.uniform(0.0, 3000.0, n)
    veh.s[:, 1:] = veh.s[:, :1] + rng.uniform(-40.0, 40.0, (n, 11))
    veh.d[:] = rng.integers(-1, 3, (n, 12)) * 4.0
    veh.psi[:] = rng.normal(0.0, 0.2, (n, 12))
    veh.kind[:] = rng.integers(0, 4, (n, 12))
    batch = occupancy(roads, veh)
    for i in range(n):
        assert np.array_equal(batch[i], occupancy(roads, veh, worlds=np.array([i]))[0])
    assert np.array_equal(batch[::-1], occupancy(roads, veh, worlds=np.arange(n)[::-1]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cell_m": 0.0}, "cell_m=0.0"),
        ({"cell_m": -0.5}, "cell_m=-0.5"),
        ({"forward_m": 0.0}, "forward_m=0.0"),
        ({"side_m": -3.0}, "side_m=-3.0"),
        ({"backward_m": 20.3}, "backward_m=20.3"),
        ({"cell_m": 0.01}, "cell_m=0.01"),  # 6000 x 4000 cells
    ],
)
def test_bad_spec_names_the_value(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(DojoConfigError, match=message.replace(".", r"\.")):
        OccupancySpec(**kwargs)
