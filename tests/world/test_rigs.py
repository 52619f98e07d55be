"""Named camera rigs, the rig setting of drives and evaluations, and rigs refused before work."""

from __future__ import annotations

import pytest

from dojo.errors import ConfigError
from dojo.eval.config import EvalConfig
from dojo.eval.evaluate import evaluate
from dojo.fleet.config import DriveConfig
from dojo.world.camera import CameraRig, CameraSpec
from dojo.world.rigs import DEFAULT_RIG, RIGS


def test_every_named_rig_builds_at_any_resolution_and_colour() -> None:
    for name in RIGS:
        rig = CameraRig.named(name, rgb=True, width=64, height=32)
        assert rig.rgb and rig.image_shape == (len(rig.cameras), 32, 64, 3)
        assert {(c.width_px, c.height_px) for c in rig.cameras} == {(64, 32)}


def test_quad_is_the_old_four_camera_rig_and_the_default_has_forward_cameras_of_different_reach() -> (
    None
):
    quad = CameraRig.named("quad")
    assert quad.names == ["front", "left", "right", "rear"]
    assert {c.hfov_deg for c in quad.cameras} == {90.0} and quad.max_vehicles == 12
    default = CameraRig.default()
    assert default == CameraRig.named(DEFAULT_RIG)
    forward = [c for c in default.cameras if c.yaw_deg == 0.0]
    assert len(forward) >= 2
    reach = sorted((c.focal_px, c.max_range_m) for c in forward)
    # a longer focal length sees farther: each forward camera covers another distance band
    assert [r for _, r in reach] == sorted(r for _, r in reach) and reach[0][1] < reach[-1][1]
    assert {"left", "right", "rear"} <= set(default.names)


def test_unknown_rig_name_is_one_clear_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="Unknown camera rig 'hexa'.*quad"):
        CameraRig.named("hexa")
    with pytest.raises(ConfigError, match="'hexa'"):
        DriveConfig(rig="hexa")
    with pytest.raises(ConfigError, match="'hexa'"):
        EvalConfig(rig="hexa")
    with pytest.raises(ConfigError, match="'hexa'"):  # before the first car moves
        evaluate("expert", decisions=100, cars=1, rig="hexa")


def test_drive_and_eval_share_one_rig_setting() -> None:
    assert DriveConfig().rig == EvalConfig().rig == DEFAULT_RIG
    assert DriveConfig(rig="quad").rig == "quad"


def test_a_camera_that_sees_nothing_is_refused() -> None:
    # 20 degrees: f = 272 px; 28.3 rows below the horizon put the nearest ground 12.5 m away
    with pytest.raises(ConfigError, match="'narrow' sees nothing.*nearest ground is 12.5 m"):
        CameraSpec("narrow", z_m=1.3, hfov_deg=20.0, max_range_m=10.0)
    assert CameraSpec("narrow", z_m=1.3, hfov_deg=20.0, max_range_m=13.0).nearest_ground_m < 13.0


def test_two_cameras_with_one_name_are_refused() -> None:
    with pytest.raises(ConfigError, match="repeated: front"):
        CameraRig((CameraSpec("front"), CameraSpec("front", hfov_deg=20.0)))
