"""Camera rig and renderer: geometry checked against the pinhole formulas, plus determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dojo.errors import DojoConfigError
from dojo.world.camera import (
    ASPHALT,
    GRASS,
    HAZE,
    MARKING,
    SKY,
    CameraRig,
    CameraSpec,
    measure_frames_per_s,
    palette,
    render,
)
from dojo.world.road import RoadConfig, Roads
from dojo.world.vehicles import BODY, Kind, Vehicles
from tests.world.scenes import LANE_W, scene

GREY = palette(False)


def front_rig(z: float = 1.5, horizon: float = 0.5, max_range: float = 200.0) -> CameraRig:
    """One forward camera at the ego's centre: f = 48 px for 96 px and 90 degrees."""
    return CameraRig((CameraSpec("front", 0.0, 0.0, z, 0.0, 90.0, 96, 48, horizon, max_range),))


def one(roads: Roads, veh: Vehicles, rig: CameraRig) -> np.ndarray:
    return render(roads, veh, rig)[0]


def test_empty_road_sky_above_horizon_and_road_below() -> None:
    img = one(*scene(), front_rig(max_range=1000.0))[0]  # (48, 96); horizon at row 24
    assert (img[:24] == GREY[SKY]).all()
    assert np.isin(img[24:], GREY[[ASPHALT, MARKING, GRASS]]).all()  # all ground, none beyond range
    assert np.isin(img[24:, 47:49], GREY[[ASPHALT, MARKING]]).all()  # the road goes to the horizon
    assert (img[30:, 44:52] == GREY[ASPHALT]).all()  # own lane, no marking straight ahead


def test_horizon_moves_with_horizon_row_and_far_ground_is_haze() -> None:
    img = one(*scene(), front_rig(horizon=0.25, max_range=30.0))[0]  # horizon at row 12
    assert (img[:12] == GREY[SKY]).all()
    # row 12 centre looks 0.5 px down: 1.5 m * 48 / 0.5 = 144 m away, beyond 30 m: haze
    assert (img[12, 40:56] == GREY[HAZE]).all()
    # ground 30 m away is 48 * 1.5 / 30 = 2.4 px below the horizon
    assert (img[15:, 44:52] == GREY[ASPHALT]).all()


@pytest.mark.parametrize("distance_m", [8.0, 15.0, 30.0])
def test_vehicle_ahead_is_centred_with_pinhole_size(distance_m: float) -> None:
    length, width, height = BODY[Kind.TRUCK]
    rig = front_rig(z=1.5)
    empty = one(*scene(), rig)[0]
    # rear face at distance_m ahead of the camera (which sits at the ego's centre)
    img = one(*scene([(Kind.TRUCK, distance_m + 0.5 * length, LANE_W, 0.0)]), rig)[0]
    rows, cols = np.nonzero(img != empty)
    f = 48.0
    assert abs(cols.mean() - 47.5) < 0.5  # centred about the optical axis
    assert abs((cols.max() - cols.min() + 1) - f * width / distance_m) <= 1.0
    col = img[:, 48] != empty[:, 48]
    assert abs(col.sum() - f * height / distance_m) <= 1.0
    top, bottom = np.flatnonzero(col)[[0, -1]]
    assert abs(bottom + 0.5 - (24 + f * 1.5 / distance_m)) <= 1.0  # where it stands on the road


def test_vehicle_behind_shows_in_rear_camera_only() -> None:
    rig = CameraRig.default()
    empty = one(*scene(), rig)
    img = one(*scene([(Kind.CAR, -15.0, LANE_W, 0.0)]), rig)
    changed = (img != empty).reshape(len(rig.cameras), -1).sum(axis=1)
    names = rig.names
    assert changed[names.index("rear")] > 20
    assert changed[names.index("front")] == 0
    assert changed[names.index("left")] == 0 and changed[names.index("right")] == 0


def test_vehicle_left_shows_in_left_camera_on_its_centre_column() -> None:
    rig = CameraRig.default()
    empty = one(*scene(ego_d=0.0), rig)
    img = one(*scene([(Kind.CAR, 0.0, LANE_W, 0.0)], ego_d=0.0), rig)
    changed = img != empty
    left = rig.names.index("left")
    shown = changed.reshape(len(rig.cameras), -1).sum(axis=1)
    assert np.flatnonzero(shown).tolist() == [left]
    cols = np.nonzero(changed[left])[1]
    assert abs(cols.mean() - 47.5) < 1.0  # straight to the side, level with the mount


def test_solid_edge_marking_at_projected_column() -> None:
    """Ego in lane 0: the right road edge (d = -2 m) is solid, seen where the pinhole puts it."""
    cam_z, f, cy = 1.5, 48.0, 24.0
    img = one(*scene(ego_d=0.0), front_rig(z=cam_z))[0]
    for row in range(28, 48):
        x = cam_z * f / (row + 0.5 - cy)  # ground distance of this row's centre [m]
        u = 48.0 + f * 2.0 / x  # 2 m to the right
        hits = np.flatnonzero(img[row] == GREY[MARKING])
        hits = hits[hits > 48]
        assert hits.size, f"no marking in row {row}"
        assert np.abs(hits + 0.5 - u).min() <= 1.0, (row, u, hits)


def test_dashed_lines_between_lanes_and_solid_edges() -> None:
    cam_z, f, cy = 1.5, 48.0, 24.0
    img = one(*scene(ego_d=LANE_W), front_rig(z=cam_z))[0]  # centre lane of three

    def marked(offset_m: float) -> np.ndarray:
        """Whether each near row shows a marking where a line offset_m to the left projects."""
        out = []
        for row in range(27, 48):
            x = cam_z * f / (row + 0.5 - cy)
            u = int(math.floor(48.0 - f * offset_m / x))
            out.append(
                bool((img[row, max(u - 1, 0) : u + 2] == GREY[MARKING]).any())
                if 0 <= u < 96
                else None
            )
        return np.array([m for m in out if m is not None])

    dashed = marked(2.0)  # between lanes 1 and 2
    assert dashed.any() and not dashed.all()
    edge = marked(6.0)  # left road edge
    assert edge.all()


def test_dropped_lane_is_grass_where_closed() -> None:
    config = RoadConfig(lanes=3, lane_width_m=LANE_W, drop_start_m=520.0, drop_length_m=100.0)
    cam_z, f, cy = 1.5, 48.0, 24.0
    img = one(*scene(ego_d=LANE_W, config=config), front_rig(z=cam_z))[0]

    def pixel(x: float, y: float) -> int:
        return int(img[int(cy + f * cam_z / x), int(48.0 - f * y / x)])

    assert pixel(10.0, -LANE_W) == GREY[ASPHALT]  # lane 0 before the drop (s = 510)
    assert pixel(40.0, -LANE_W) == GREY[GRASS]  # lane 0 inside the drop (s = 540)
    assert pixel(40.0, 0.0) == GREY[ASPHALT]  # own lane stays open


def test_ramp_is_road_only_on_its_span() -> None:
    config = RoadConfig(lanes=2, lane_width_m=LANE_W, ramp_start_m=400.0, ramp_length_m=120.0)
    cam_z, f, cy = 1.5, 48.0, 24.0
    img = one(*scene(ego_d=0.0, config=config), front_rig(z=cam_z))[0]

    def pixel(x: float, y: float) -> int:
        return int(img[int(cy + f * cam_z / x), int(48.0 - f * y / x)])

    assert pixel(10.0, -LANE_W) == GREY[ASPHALT]  # ramp lane at s = 510, open
    assert pixel(40.0, -LANE_W) == GREY[GRASS]  # s = 540, past its end


def test_nearer_box_hides_farther_one() -> None:
    rig = front_rig()
    truck = (Kind.TRUCK, 20.0, LANE_W, 0.0)
    hidden_car = (Kind.CAR, 40.0, LANE_W, 0.0)
    with_truck = one(*scene([truck]), rig)
    both = one(*scene([truck, hidden_car]), rig)
    assert np.array_equal(with_truck, both)
    car_first = one(*scene([hidden_car, truck]), rig)  # slot order does not matter
    assert np.array_equal(with_truck, car_first)


def test_low_box_shows_top_face_and_sides_differ() -> None:
    img = one(*scene([(Kind.DEBRIS, 8.0, LANE_W + 1.0, 0.5)]), front_rig(z=1.5))[0]
    base = 6 + 3 * int(Kind.DEBRIS)  # VEHICLE0 + 3 * kind: top, side, end
    shades = set(np.unique(img).tolist()) & set(GREY[base : base + 3].tolist())
    assert GREY[base] in shades  # camera above the debris: its top is seen
    assert len(shades) == 3  # top, a long side and an end, each its own shade


def test_inactive_and_ego_are_not_drawn() -> None:
    rig = CameraRig.default()
    roads, veh = scene([(Kind.CAR, 10.0, LANE_W, 0.0)])
    veh.active[0, 1] = False
    veh.length[0, 0], veh.width[0, 0], veh.height[0, 0] = BODY[Kind.TRUCK]  # a huge ego
    assert np.array_equal(render(roads, veh, rig), render(*scene(), rig))


def test_max_vehicles_keeps_the_nearest() -> None:
    spec = CameraSpec("front", z_m=1.5, horizon_row=0.5)
    near, far = (Kind.CAR, 10.0, 0.0, 0.0), (Kind.CAR, 30.0, 2 * LANE_W, 0.0)
    one_only = CameraRig((spec,), max_vehicles=1)
    assert np.array_equal(one(*scene([far, near]), one_only), one(*scene([near]), one_only))


def test_rgb_shape_and_curved_road() -> None:
    roads, veh = scene(ego_s=1000.0 + 0.25 * math.pi * 400.0)  # a quarter into the first bend
    rig = CameraRig.default(rgb=True, width=64, height=32)
    img = render(roads, veh, rig)
    assert img.shape == (1, len(rig.cameras), 32, 64, 3) and img.dtype == np.uint8
    front = img[0, 0]
    assert (front[-6:, 28:36] == palette(True)[ASPHALT]).all()  # the lane ahead under the bonnet


def random_worlds(n: int, seed: int = 0) -> tuple[Roads, Vehicles]:
    rng = np.random.default_rng(seed)
    configs = [
        RoadConfig(
            lanes=int(rng.integers(2, 5)),
            ramp_start_m=100.0,
            ramp_length_m=200.0,
            drop_start_m=500.0,
            drop_length_m=150.0,
        )
        for _ in range(n)
    ]
    roads = Roads.stack(configs)
    veh = Vehicles.empty(n, 16)
    veh.active[:] = rng.random((n, 16)) < 0.9
    veh.active[:, 0] = True
    veh.s[:, 0] = rng.uniform(0.0, 3000.0, n)
    veh.d[:, 0] = rng.integers(0, 2, n) * 4.0
    veh.s[:, 1:] = veh.s[:, :1] + rng.uniform(-60.0, 60.0, (n, 15))
    veh.d[:, 1:] = rng.integers(-1, 3, (n, 15)) * 4.0 + rng.normal(0.0, 0.3, (n, 15))
    veh.psi[:] = rng.normal(0.0, 0.1, (n, 16))
    veh.kind[:] = rng.integers(0, 4, (n, 16))
    for kind in Kind:
        mask = veh.kind == kind
        veh.length[mask], veh.width[mask], veh.height[mask] = BODY[kind]
    return roads, veh


def test_deterministic_across_batches_and_threads() -> None:
    roads, veh = random_worlds(37, seed=1)
    rig = CameraRig.default()
    batch = render(roads, veh, rig, threads=1)
    assert np.array_equal(batch, render(roads, veh, rig, threads=2))
    assert np.array_equal(batch, render(roads, veh, rig, threads=3))
    for i in (0, 17, 36):
        assert np.array_equal(batch[i], render(roads, veh, rig, worlds=np.array([i]))[0])
    reverse = render(roads, veh, rig, worlds=np.arange(36, -1, -1))
    assert np.array_equal(batch, reverse[::-1])
    assert (batch != GREY[SKY]).any(axis=(2, 3)).all()  # every frame shows something


def test_measure_frames_per_s_is_positive() -> None:
    roads, veh = random_worlds(4)
    assert measure_frames_per_s(roads, veh, CameraRig.default(), seconds=0.05) > 0.0


def spec_kwargs(**over: object) -> dict[str, object]:
    base: dict[str, object] = dict(
        name="cam",
        x_m=0.0,
        y_m=0.0,
        z_m=1.4,
        yaw_deg=0.0,
        hfov_deg=90.0,
        width_px=96,
        height_px=48,
        horizon_row=0.4,
        max_range_m=100.0,
    )
    return {**base, **over}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("width_px", 0),
        ("height_px", -4),
        ("hfov_deg", 0.0),
        ("hfov_deg", 175.0),
        ("z_m", 0.0),
        ("z_m", -1.0),
        ("horizon_row", 1.0),
        ("horizon_row", -0.1),
        ("horizon_row", 0.995),  # the bottom row's centre sits on the horizon: no ground at all
        ("max_range_m", 0.0),
        ("max_range_m", -5.0),
    ],
)
def test_bad_camera_spec_names_the_value(field: str, value: object) -> None:
    with pytest.raises(
        DojoConfigError, match=f"{field}={value!r}".replace("(", r"\(").replace(".", r"\.")
    ):
        CameraSpec(**spec_kwargs(**{field: value}))  # type: ignore[arg-type]


def test_bad_rig_and_arguments() -> None:
    cam = CameraSpec("a")
    with pytest.raises(DojoConfigError, match="at least one camera"):
        CameraRig(())
    with pytest.raises(DojoConfigError, match="repeated: a"):
        CameraRig((cam, CameraSpec("a", yaw_deg=90.0)))
    with pytest.raises(DojoConfigError, match="one resolution"):
        CameraRig((cam, CameraSpec("b", width_px=64)))
    with pytest.raises(DojoConfigError, match="max_vehicles=0"):
        CameraRig((cam,), max_vehicles=0)
    roads, veh = scene()
    with pytest.raises(DojoConfigError, match=r"worlds=\[3\]"):
        render(roads, veh, CameraRig((cam,)), worlds=np.array([3]))
    with pytest.raises(DojoConfigError, match="threads=0"):
        render(roads, veh, CameraRig((cam,)), threads=0)
