"""The visibility rule: closed-form pixel cover, field of view, range, the nearest drawn, and
its agreement with what the renderer paints."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dojo.errors import ConfigError
from dojo.world.camera import (
    GLASS,
    VEHICLE0,
    CameraRig,
    CameraSpec,
    ego_pose,
    in_ego_frame,
    materials,
)
from dojo.world.road import RoadConfig, Roads
from dojo.world.vehicles import BODY, Kind, Vehicles
from dojo.world.visibility import MIN_PIXELS, pixel_cover, visible, visible_objects
from tests.world.scenes import LANE_W, scene

CAR_L, CAR_W, CAR_H = BODY[Kind.CAR]


def one_camera(hfov: float = 90.0, max_range: float = 200.0, z: float = 1.5) -> CameraRig:
    return CameraRig((CameraSpec("cam", 0.0, 0.0, z, 0.0, hfov, 96, 48, 0.5, max_range),))


def car(x: float, y: float = 0.0, yaw: float = 0.0) -> tuple[np.ndarray, ...]:
    return tuple(np.array([v]) for v in (x, y, yaw, CAR_L, CAR_W, CAR_H))


@pytest.mark.parametrize("gap_m", [10.0, 20.0, 45.0])
def test_pixel_cover_of_a_car_ahead_is_the_pinhole_formula(gap_m: float) -> None:
    f = 48.0  # 96 px, 90 degrees
    cover = pixel_cover(one_camera(), *car(gap_m + 0.5 * CAR_L))[0, 0]
    # the camera sits at the car's roof height (1.5 m): f*W/d wide, f*H/d from road to roof
    assert cover == pytest.approx((f * CAR_W / gap_m) * (f * CAR_H / gap_m), rel=1e-9)
    assert visible(one_camera(), *car(gap_m + 0.5 * CAR_L))[0] == (cover >= MIN_PIXELS)


def test_an_object_beyond_the_field_of_view_is_invisible() -> None:
    rig = one_camera(hfov=90.0)
    # centre 20 m ahead; 45 degrees plus the car's angular half width puts it just outside
    x = 20.0
    inside = pixel_cover(rig, *car(x, y=x * math.tan(math.radians(40.0))))[0, 0]
    outside = pixel_cover(rig, *car(x, y=x + CAR_L))[0, 0]
    assert inside > MIN_PIXELS and outside == 0.0
    assert visible(rig, *car(x, y=x + CAR_L)).tolist() == [False]
    behind = pixel_cover(rig, *car(-20.0))[0, 0]
    assert behind == 0.0


def test_an_object_beyond_max_range_is_invisible_however_big() -> None:
    rig = one_camera(hfov=20.0, max_range=100.0)  # f = 272 px: a car at 100 m covers ~21 px
    near = pixel_cover(rig, *car(99.0 + 0.5 * CAR_L))[0, 0]
    far = pixel_cover(rig, *car(101.0 + 0.5 * CAR_L))[0, 0]
    assert near > 20.0 and far == 0.0


def test_a_speck_is_invisible_and_the_threshold_is_the_pinhole_size() -> None:
    f = 48.0
    limit = f * math.sqrt(CAR_W * CAR_H / MIN_PIXELS)  # the gap where the car covers MIN_PIXELS
    rig = one_camera()
    assert visible(rig, *car(0.95 * limit + 0.5 * CAR_L)).tolist() == [True]
    assert visible(rig, *car(1.05 * limit + 0.5 * CAR_L)).tolist() == [False]


def test_only_the_nearest_max_vehicles_are_visible_and_inactive_never() -> None:
    spec = CameraSpec("cam", 0.0, 0.0, 1.5, 0.0, 90.0, 96, 48, 0.5, 200.0)
    rig = CameraRig((spec,), max_vehicles=2)
    x = np.array([[30.0, 10.0, 20.0, 15.0]])
    y = np.array([[0.0, 0.0, 4.0, -4.0]])
    length, width, height = (np.full_like(x, v) for v in (CAR_L, CAR_W, CAR_H))
    active = np.array([[True, True, True, False]])
    seen = visible(rig, x, y, np.zeros_like(x), length, width, height, active=active)
    assert seen.tolist() == [[False, True, True, False]]  # 10 m and 20 m; 15 m is not there


def test_bad_geometry_is_one_clear_error() -> None:
    x, y, yaw, length, width, height = car(10.0)
    with pytest.raises(ConfigError, match="width_m must be > 0"):
        pixel_cover(one_camera(), x, y, yaw, length, np.array([0.0]), height)
    with pytest.raises(ConfigError, match="x_m holds a non-finite"):
        pixel_cover(one_camera(), np.array([np.nan]), y, yaw, length, width, height)
    with pytest.raises(ConfigError, match="active has shape"):
        visible(one_camera(), x, y, yaw, length, width, height, active=np.ones((2, 1), bool))


def _one_object_worlds(n: int, seed: int) -> tuple[Roads, Vehicles]:
    """n worlds, each the ego and one object placed at random round it (no occlusion)."""
    rng = np.random.default_rng(seed)
    roads = Roads.stack([RoadConfig(lanes=3, lane_width_m=LANE_W)] * n)
    veh = Vehicles.empty(n, 2)
    veh.active[:] = True
    veh.s[:, 0], veh.d[:, 0] = 500.0, LANE_W
    veh.length[:, 0], veh.width[:, 0], veh.height[:, 0] = BODY[Kind.CAR]
    kinds = rng.integers(0, len(Kind), n)
    veh.kind[:, 1] = kinds
    veh.s[:, 1] = 500.0 + rng.choice([-1.0, 1.0], n) * rng.uniform(6.0, 260.0, n)
    veh.d[:, 1] = LANE_W + rng.uniform(-2.5, 2.5, n) * LANE_W
    veh.psi[:, 1] = rng.normal(0.0, 0.3, n)
    for i, kind in enumerate(kinds):
        veh.length[i, 1], veh.width[i, 1], veh.height[i, 1] = BODY[Kind(int(kind))]
    return roads, veh


def test_the_rule_agrees_with_the_pixels_the_renderer_paints() -> None:
    rig = CameraRig.default()
    roads, veh = _one_object_worlds(300, seed=3)
    mat = materials(roads, veh, rig)  # (W, C, H, U)
    painted = ((mat == GLASS) | (mat >= VEHICLE0)).sum(axis=(2, 3))  # (W, C)
    w = np.arange(veh.shape[0])
    x, y, yaw = in_ego_frame(roads, veh, w, ego_pose(roads, veh, w))
    cover = pixel_cover(
        rig, x[:, 1], y[:, 1], yaw[:, 1], veh.length[:, 1], veh.width[:, 1], veh.height[:, 1]
    )  # (W, C)
    assert (painted[cover == 0.0] == 0).all()  # outside the view or range: nothing painted
    assert (painted[cover >= 3 * MIN_PIXELS] > 0).all()  # a clear object is always painted
    big = cover >= 3 * MIN_PIXELS
    ratio = painted[big].sum() / cover[big].sum()
    assert 0.6 < ratio <= 1.05  # the cover bounds the silhouette's pixels from above, loosely
    seen = visible_objects((roads, veh), rig)
    assert not seen[:, 0].any()  # the ego does not see itself
    assert (seen[:, 1] == (cover >= MIN_PIXELS).any(axis=1)).all()


def test_visible_objects_of_a_scene_hide_a_speck_and_show_a_car() -> None:
    roads, veh = scene([(Kind.CAR, 30.0, LANE_W, 0.0), (Kind.DEBRIS, 240.0, 2 * LANE_W, 0.0)])
    assert visible_objects((roads, veh), CameraRig.named("quad")).tolist() == [[False, True, False]]


def test_culling_by_range_and_field_of_view_never_changes_the_cover() -> None:
    """pixel_cover projects only boxes that may reach a camera's range and view; every other
    box must come out 0 as the full projection gives, boxes around the camera included."""
    from dojo.world.visibility import _camera_cover

    rng = np.random.default_rng(11)
    for name in ("penta", "quad"):
        rig = CameraRig.named(name, False, 96, 48)
        for scale in (3.0, 40.0, 300.0):
            n = 20_000
            x, y = rng.uniform(-scale, scale, n), rng.uniform(-scale, scale, n)
            yaw = rng.uniform(-math.pi, math.pi, n)
            length, width, height = (rng.uniform(0.3, hi, n) for hi in (18.0, 4.0, 4.5))
            got = pixel_cover(rig, x, y, yaw, length, width, height)
            for c, cam in enumerate(rig.cameras):
                cy, sy = math.cos(math.radians(cam.yaw_deg)), math.sin(math.radians(cam.yaw_deg))
                rx, ry = x - cam.x_m, y - cam.y_m
                fwd, left = cy * rx + sy * ry, -sy * rx + cy * ry
                centre = np.arctan2(left, fwd)
                full = _camera_cover(cam, fwd, left, centre, yaw, length / 2, width / 2, height)
                np.testing.assert_array_equal(got[:, c], full)
            assert (got > 0).any() and (got == 0).any()
